"""HQ-SAM: high-quality masks from a frozen Segment Anything, with a few modules injected as adapters.

Paper: Ke et al., "Segment Anything in High Quality" (NeurIPS 2023, https://arxiv.org/abs/2306.01567).
Upstream: https://github.com/SysCV/sam-hq (`segment_anything/modeling/mask_decoder_hq.py`), the
`segment-anything-hq` package. Weights: `lkeab/hq-sam` (`sam_hq_vit_b.pth`, `_l`, `_h`), Apache 2.0.

SAM's weights stay as they are; four fluxion adapters add:

    first global-attention encoder block ─► also kept with the image embedding (early ViT features)
    output tokens ─► plus the HQ token
    mask prediction ─► plus the HQ mask: the HQ token's MLP against HQ features, which fuse the
                       upscaled image (3×3 convolutions) with the image embedding and the early
                       features (each upscaled ×4 by transposed convolutions)
    mask selection ─► SAM's chosen mask (the best-scored multimask one, or the single one) plus the
                      HQ mask; or the HQ mask alone (`hq_token_only`)

`HQSAMAdapter(sam).inject()` puts them in, `eject()` takes them out and leaves SAM exactly as before.

Example:
    >>> import torch
    >>> from zoo.foundationals.segment_anything.model import SegmentAnything, SegmentAnythingConfig
    >>> sam = SegmentAnything(SegmentAnythingConfig.tiny())
    >>> hq = HQSAMAdapter(sam).inject()
    >>> masks, iou = sam(torch.randn(1, 3, 96, 96), points=torch.tensor([[[10.0, 20.0]]]), labels=torch.ones(1, 1))
    >>> masks.shape, iou.shape  # one mask: SAM's best plus the HQ mask
    (torch.Size([1, 1, 24, 24]), torch.Size([1, 1]))
    >>> hq.eject()
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

import zoo.fluxion as fl
from zoo.fluxion.layers.weighted import Device, DType
from zoo.foundationals.segment_anything.image_encoder import EncoderBlock
from zoo.foundationals.segment_anything.layers import ConvTranspose2d, LayerNorm2d, MultiLayerPerceptron
from zoo.foundationals.segment_anything.mask_decoder import (
    DECODER_CONTEXT,
    MaskPrediction,
    MaskSelection,
    OutputTokens,
    masks_from,
)
from zoo.foundationals.segment_anything.model import IMAGE_CONTEXT, SegmentAnything, SegmentAnythingConfig

EARLY_FEATURES = "hq_early_features"

# -- config -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HQSAMConfig:
    """Architecture of the HQ-SAM modules; `for_model` reads it off the SAM they go into.

    Attributes:
        vit_dim: Width of the image encoder (of the early features).
        embed_dim: Width of the mask decoder.
        early_block: The encoder block whose output is the early features (the first global one).
        layer_norm_eps: Epsilon of the channel-wise layer norms.
        hypernetwork_depth: Layers of the HQ token's MLP.
    """

    vit_dim: int = 768
    embed_dim: int = 256
    early_block: int = 2
    layer_norm_eps: float = 1e-6
    hypernetwork_depth: int = 3

    @classmethod
    def for_model(cls, config: SegmentAnythingConfig) -> HQSAMConfig:
        """The HQ-SAM modules of a SAM of this config."""
        encoder = config.image_encoder
        if not encoder.global_attention_blocks:
            raise ValueError("HQ-SAM reads the first global-attention block: this encoder has none")
        return cls(
            vit_dim=encoder.embed_dim,
            embed_dim=config.mask_decoder.embed_dim,
            early_block=min(encoder.global_attention_blocks),
        )


# -- modules ----------------------------------------------------------------------------------------


class HQToken(OutputTokens):
    """The HQ output token, repeated for each prompt."""


class HQHypernetwork(MultiLayerPerceptron):
    """The HQ token → the weights of its mask over the HQ features."""


class EmbeddingEncoder(fl.Chain):
    """The image embedding (1, C, h, w) upscaled ×4 to (1, C/8, 4h, 4w)."""

    def __init__(self, config: HQSAMConfig, device: Device = None, dtype: DType = None) -> None:
        width = config.embed_dim
        super().__init__(
            ConvTranspose2d(width, width // 4, 2, stride=2, device=device, dtype=dtype),
            LayerNorm2d(width // 4, eps=config.layer_norm_eps, device=device, dtype=dtype),
            fl.GeLU(),
            ConvTranspose2d(width // 4, width // 8, 2, stride=2, device=device, dtype=dtype),
        )


class CompressViTFeatures(fl.Chain):
    """The early ViT features (1, vit_dim, h, w) upscaled ×4 to (1, C/8, 4h, 4w)."""

    def __init__(self, config: HQSAMConfig, device: Device = None, dtype: DType = None) -> None:
        width = config.embed_dim
        super().__init__(
            ConvTranspose2d(config.vit_dim, width, 2, stride=2, device=device, dtype=dtype),
            LayerNorm2d(width, eps=config.layer_norm_eps, device=device, dtype=dtype),
            fl.GeLU(),
            ConvTranspose2d(width, width // 8, 2, stride=2, device=device, dtype=dtype),
        )


class MaskFeatures(fl.Chain):
    """SAM's upscaled image (B, C/8, 4h, 4w) through two 3×3 convolutions, same shape."""

    def __init__(self, config: HQSAMConfig, device: Device = None, dtype: DType = None) -> None:
        eighth, quarter = config.embed_dim // 8, config.embed_dim // 4
        super().__init__(
            fl.Conv2d(eighth, quarter, 3, padding=1, device=device, dtype=dtype),
            LayerNorm2d(quarter, eps=config.layer_norm_eps, device=device, dtype=dtype),
            fl.GeLU(),
            fl.Conv2d(quarter, eighth, 3, padding=1, device=device, dtype=dtype),
        )


# -- adapters ---------------------------------------------------------------------------------------


class EarlyFeatures(fl.Chain, fl.Adapter[EncoderBlock]):
    """Keeps an encoder block's (B, H, W, C) output with the image embedding."""

    def __init__(self, target: EncoderBlock) -> None:
        with self.setup_adapter(target):
            super().__init__(target, fl.SetContext(IMAGE_CONTEXT, EARLY_FEATURES))


class HQOutputTokens(fl.Concatenate, fl.Adapter[OutputTokens]):
    """SAM's output tokens, then the HQ token."""

    def __init__(
        self, target: OutputTokens, config: HQSAMConfig, device: Device = None, dtype: DType = None
    ) -> None:
        with self.setup_adapter(target):
            super().__init__(target, HQToken(1, config.embed_dim, device=device, dtype=dtype), dim=1)


class HQMaskPrediction(fl.Chain, fl.Adapter[MaskPrediction]):
    """SAM's masks, then the HQ mask: (tokens after the IoU token, upscaled image) → (B, M + 1, H, W).

    The HQ token is the one after SAM's mask tokens; the image embedding and the early features are
    read from the context.
    """

    def __init__(
        self, target: MaskPrediction, config: HQSAMConfig, device: Device = None, dtype: DType = None
    ) -> None:
        width = config.embed_dim
        with self.setup_adapter(target):
            super().__init__(
                target,
                HQHypernetwork(
                    width, width, width // 8, config.hypernetwork_depth, device=device, dtype=dtype
                ),
                EmbeddingEncoder(config, device=device, dtype=dtype),
                CompressViTFeatures(config, device=device, dtype=dtype),
                MaskFeatures(config, device=device, dtype=dtype),
            )

    def forward(self, tokens: torch.Tensor, features: torch.Tensor) -> torch.Tensor:  # pyright: ignore[reportIncompatibleMethodOverride]
        sam_prediction, hypernetwork, embedding_encoder, compress, mask_features = self
        sam_masks = sam_prediction(tokens, features)
        hq_features = embedding_encoder(self._image_embedding()) + compress(self._early_features())
        fused = mask_features(features) + hq_features.repeat(features.shape[0], 1, 1, 1)
        hq_token = tokens[:, sam_masks.shape[1]]
        return torch.cat([sam_masks, masks_from(hypernetwork(hq_token)[:, None], fused)], dim=1)

    def _image_embedding(self) -> torch.Tensor:
        return self.use_context(DECODER_CONTEXT)["image_embedding"]

    def _early_features(self) -> torch.Tensor:
        values = self.use_context(IMAGE_CONTEXT)
        if EARLY_FEATURES not in values:
            raise RuntimeError("HQ-SAM needs the early ViT features: encode the image with HQ-SAM injected")
        return values[EARLY_FEATURES].permute(0, 3, 1, 2)


class HQMaskSelection(fl.Chain, fl.Adapter[MaskSelection]):
    """(masks (B, M + 1, H, W), IoUs (B, M)) → one mask per prompt: SAM's (the best-scored multimask
    output, or the single mask) plus the HQ mask, or the HQ mask alone with `hq_token_only`."""

    def __init__(self, target: MaskSelection, hq_token_only: bool = False) -> None:
        with self.setup_adapter(target):
            super().__init__(target)
            self.hq_token_only = hq_token_only

    def forward(self, masks: torch.Tensor, iou: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # pyright: ignore[reportIncompatibleMethodOverride]
        sam_count = iou.shape[1]
        if self.use_context(DECODER_CONTEXT)["multimask_output"]:
            best_iou, best = iou[:, 1:sam_count].max(dim=1)
            sam_iou = best_iou[:, None]
            sam_masks = masks[:, 1:sam_count][torch.arange(masks.shape[0], device=masks.device), best][
                :, None
            ]
        else:
            sam_iou, sam_masks = iou[:, :1], masks[:, :1]
        hq_masks = masks[:, sam_count : sam_count + 1]
        return (hq_masks if self.hq_token_only else sam_masks + hq_masks), sam_iou

    def extra_repr(self) -> str:
        return f"hq_token_only={self.hq_token_only}"


# -- the whole -------------------------------------------------------------------------------------------


class HQSAMAdapter:
    """HQ-SAM's four adapters for one `SegmentAnything`, injected and ejected together.

    Args:
        target: The SAM model (any size).
        config: The HQ modules' architecture; by default read off the target.
        weights: HQ weights as `weights()` names them (what `zoo convert hq-sam` writes); loaded
            strictly. Without, the modules keep their random initialisation.
        hq_token_only: Return the HQ mask alone instead of SAM's mask plus the HQ mask.
    """

    def __init__(
        self,
        target: SegmentAnything,
        config: HQSAMConfig | None = None,
        weights: Mapping[str, torch.Tensor] | None = None,
        hq_token_only: bool = False,
    ) -> None:
        self.target = target
        self.config = config or HQSAMConfig.for_model(target.config)
        device, dtype = target.device, target.dtype
        decoder = target.mask_decoder
        self.adapters: tuple[Any, ...] = (
            EarlyFeatures(target.image_encoder.blocks[self.config.early_block]),
            HQOutputTokens(decoder.ensure_find(OutputTokens), self.config, device=device, dtype=dtype),
            HQMaskPrediction(decoder.ensure_find(MaskPrediction), self.config, device=device, dtype=dtype),
            HQMaskSelection(decoder.ensure_find(MaskSelection), hq_token_only),
        )
        if weights is not None:
            self.load_weights(weights)

    @property
    def hq_token_only(self) -> bool:
        """Whether predictions are the HQ mask alone (else SAM's mask plus the HQ mask)."""
        return self.adapters[3].hq_token_only

    @hq_token_only.setter
    def hq_token_only(self, value: bool) -> None:
        self.adapters[3].hq_token_only = value

    @property
    def is_injected(self) -> bool:
        return all(adapter.is_injected for adapter in self.adapters)

    def inject(self) -> HQSAMAdapter:
        """Put the adapters into the target; returns self."""
        for adapter in self.adapters:
            adapter.inject()
        return self

    def eject(self) -> None:
        """Take them out: the target is exactly as before (its modules, order and weights)."""
        for adapter in reversed(self.adapters):
            adapter.eject()

    def weights(self) -> dict[str, torch.Tensor]:
        """The HQ modules' weights: `<adapter>.<module path>`, SAM's own left out."""
        found: dict[str, torch.Tensor] = {}
        for adapter in self.adapters:
            sam_child = next(name for name, child in adapter.named_children() if child is adapter.target)
            for key, tensor in adapter.state_dict().items():
                if not key.startswith(sam_child + "."):
                    found[f"{type(adapter).__name__}.{key}"] = tensor
        return found

    def load_weights(self, weights: Mapping[str, torch.Tensor]) -> None:
        """Load `weights()`-named tensors; every key must match, shapes included."""
        expected = self.weights()
        missing, unexpected = sorted(set(expected) - set(weights)), sorted(set(weights) - set(expected))
        wrong = sorted(k for k in set(expected) & set(weights) if expected[k].shape != weights[k].shape)
        if missing or unexpected or wrong:
            raise KeyError(
                f"HQ-SAM weights do not fit: missing {missing[:5]}, unexpected {unexpected[:5]}, shapes {wrong[:5]}"
            )
        with torch.no_grad():
            for key, tensor in weights.items():
                expected[key].copy_(tensor)


__all__ = [
    "EARLY_FEATURES",
    "CompressViTFeatures",
    "EarlyFeatures",
    "EmbeddingEncoder",
    "HQHypernetwork",
    "HQMaskPrediction",
    "HQMaskSelection",
    "HQOutputTokens",
    "HQSAMAdapter",
    "HQSAMConfig",
    "HQToken",
    "MaskFeatures",
]

"""HQ-SAM: high-quality masks from a frozen Segment Anything, with a few modules injected as adapters.

Paper: Ke et al., "Segment Anything in High Quality" (NeurIPS 2023, https://arxiv.org/abs/2306.01567).
Upstream: https://github.com/SysCV/sam-hq (`segment_anything/modeling/mask_decoder_hq.py`), the
`segment-anything-hq` package. Weights: `lkeab/hq-sam` (`sam_hq_vit_b.pth`, `_l`, `_h`), Apache 2.0.

`HQSAM` holds HQ-SAM's own modules (what `zoo convert` writes from a checkpoint, and `zoo.load` reads):
the HQ token, its MLP and three small convolution stacks. SAM's weights stay as they are; four fluxion
adapters put those modules into a SAM:

    first global-attention encoder block ─► also kept with the image embedding (early ViT features)
    output tokens ─► plus the HQ token
    mask prediction ─► plus the HQ mask: the HQ token's MLP against HQ features, which fuse the
                       upscaled image (3×3 convolutions) with the image embedding and the early
                       features (each upscaled ×4 by transposed convolutions)
    mask selection ─► SAM's chosen mask (the best-scored multimask one, or the single one) plus the
                      HQ mask; or the HQ mask alone (`hq_token_only`)

`HQSAMAdapter(sam, hq).inject()` puts them in, `eject()` takes them out and leaves SAM exactly as before.

Example:
    >>> import torch
    >>> from zoo.foundationals.segment_anything.model import SegmentAnything, SegmentAnythingConfig
    >>> sam = SegmentAnything(SegmentAnythingConfig.tiny())
    >>> hq = HQSAMAdapter(sam, HQSAM(HQSAMConfig.tiny())).inject()  # or zoo.load("out/hq_sam.vit_b")
    >>> masks, iou = sam(torch.randn(1, 3, 96, 96), points=torch.tensor([[[10.0, 20.0]]]), labels=torch.ones(1, 1))
    >>> masks.shape, iou.shape  # one mask: SAM's best plus the HQ mask
    (torch.Size([1, 1, 24, 24]), torch.Size([1, 1]))
    >>> hq.eject()
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

import zoo.fluxion as fl
from zoo.errors import ConfigError
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
UPSCALED_CHANNELS = 8  # the upscaled maps have embed_dim / 8 channels, as SAM's upscaled image

# -- config -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HQSAMConfig:
    """Architecture of the HQ-SAM modules (defaults: `sam_hq_vit_b.pth`'s); `for_model` reads it off a SAM.

    Which encoder block gives the early features is not one of its numbers: it is the first
    global-attention block of the SAM the modules go into (`first_global_block`).

    Attributes:
        vit_dim: Width of the image encoder (of the early features).
        embed_dim: Width of the mask decoder.
        layer_norm_eps: Epsilon of the channel-wise layer norms.
        hypernetwork_depth: Layers of the HQ token's MLP.
    """

    vit_dim: int = 768
    embed_dim: int = 256
    layer_norm_eps: float = 1e-6
    hypernetwork_depth: int = 3

    def __post_init__(self) -> None:
        if self.embed_dim % UPSCALED_CHANNELS:
            raise ValueError(f"embed_dim {self.embed_dim} must be a multiple of {UPSCALED_CHANNELS}")

    @classmethod
    def for_model(cls, config: SegmentAnythingConfig) -> HQSAMConfig:
        """The HQ-SAM modules of a SAM of this config."""
        return cls(vit_dim=config.image_encoder.embed_dim, embed_dim=config.mask_decoder.embed_dim)

    @classmethod
    def vit_b(cls) -> HQSAMConfig:
        """`sam_hq_vit_b.pth`'s modules, for SAM ViT-B."""
        return cls.for_model(SegmentAnythingConfig.vit_b())

    @classmethod
    def vit_l(cls) -> HQSAMConfig:
        """`sam_hq_vit_l.pth`'s modules, for SAM ViT-L."""
        return cls.for_model(SegmentAnythingConfig.vit_l())

    @classmethod
    def vit_h(cls) -> HQSAMConfig:
        """`sam_hq_vit_h.pth`'s modules, for SAM ViT-H."""
        return cls.for_model(SegmentAnythingConfig.vit_h())

    @classmethod
    def tiny(cls) -> HQSAMConfig:
        """The modules of `SegmentAnythingConfig.tiny()`'s test twin."""
        return cls.for_model(SegmentAnythingConfig.tiny())

    def describe(self) -> str:
        """In words, for messages."""
        return f"a ViT of width {self.vit_dim} and a mask decoder of width {self.embed_dim}"


def first_global_block(config: SegmentAnythingConfig) -> int:
    """The encoder block whose output HQ-SAM reads as its early features.

    Raises:
        ConfigError: The encoder has no global-attention block.
    """
    blocks = config.image_encoder.global_attention_blocks
    if not blocks:
        raise ConfigError("HQ-SAM reads the first global-attention block's output: this encoder has none")
    return min(blocks)


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
            ConvTranspose2d(width // 4, width // UPSCALED_CHANNELS, 2, stride=2, device=device, dtype=dtype),
        )


class CompressViTFeatures(fl.Chain):
    """The early ViT features (1, vit_dim, h, w) upscaled ×4 to (1, C/8, 4h, 4w)."""

    def __init__(self, config: HQSAMConfig, device: Device = None, dtype: DType = None) -> None:
        width = config.embed_dim
        super().__init__(
            ConvTranspose2d(config.vit_dim, width, 2, stride=2, device=device, dtype=dtype),
            LayerNorm2d(width, eps=config.layer_norm_eps, device=device, dtype=dtype),
            fl.GeLU(),
            ConvTranspose2d(width, width // UPSCALED_CHANNELS, 2, stride=2, device=device, dtype=dtype),
        )


class MaskFeatures(fl.Chain):
    """SAM's upscaled image (B, C/8, 4h, 4w) through two 3×3 convolutions, same shape."""

    def __init__(self, config: HQSAMConfig, device: Device = None, dtype: DType = None) -> None:
        eighth, quarter = config.embed_dim // UPSCALED_CHANNELS, config.embed_dim // 4
        super().__init__(
            fl.Conv2d(eighth, quarter, 3, padding=1, device=device, dtype=dtype),
            LayerNorm2d(quarter, eps=config.layer_norm_eps, device=device, dtype=dtype),
            fl.GeLU(),
            fl.Conv2d(quarter, eighth, 3, padding=1, device=device, dtype=dtype),
        )


# -- the model --------------------------------------------------------------------------------------


class HQSAM(fl.Chain):
    """HQ-SAM's own modules, for one size of SAM: what `HQSAMAdapter` puts into it.

    Called, it gives the HQ mask: (the HQ token after SAM's two-way transformer (B, C), SAM's upscaled
    image (B, C/8, 4h, 4w), the image embedding (1, C, h, w), the early ViT features (1, vit_dim, h, w))
    → HQ mask logits (B, 1, 4h, 4w). `token` is the learned HQ token that goes into the transformer.

    Example:
        >>> import torch
        >>> hq = HQSAM(HQSAMConfig.tiny())
        >>> hq(torch.randn(2, 32), torch.randn(2, 4, 24, 24), torch.randn(1, 32, 6, 6), torch.randn(1, 32, 6, 6)).shape
        torch.Size([2, 1, 24, 24])
    """

    def __init__(self, config: HQSAMConfig | None = None, device: Device = None, dtype: DType = None) -> None:
        self.config = config = config or HQSAMConfig()
        width = config.embed_dim
        super().__init__(
            HQToken(1, width, device=device, dtype=dtype),
            HQHypernetwork(
                width,
                width,
                width // UPSCALED_CHANNELS,
                config.hypernetwork_depth,
                device=device,
                dtype=dtype,
            ),
            EmbeddingEncoder(config, device=device, dtype=dtype),
            CompressViTFeatures(config, device=device, dtype=dtype),
            MaskFeatures(config, device=device, dtype=dtype),
        )

    @property
    def token(self) -> HQToken:
        return self.layer("HQToken", HQToken)

    def forward(  # pyright: ignore[reportIncompatibleMethodOverride]
        self,
        hq_token: torch.Tensor,
        upscaled_image: torch.Tensor,
        image_embedding: torch.Tensor,
        early_features: torch.Tensor,
    ) -> torch.Tensor:
        _, hypernetwork, embedding_encoder, compress, mask_features = self
        # In the original's order (MaskDecoderHQ): the HQ features, the fused map, then the token's MLP.
        hq_features = embedding_encoder(image_embedding) + compress(early_features)
        fused = mask_features(upscaled_image) + hq_features.repeat(upscaled_image.shape[0], 1, 1, 1)
        return masks_from(hypernetwork(hq_token)[:, None], fused)


# -- adapters ---------------------------------------------------------------------------------------


class EarlyFeatures(fl.Chain, fl.Adapter[EncoderBlock]):
    """Keeps an encoder block's (B, H, W, C) output with the image embedding."""

    def __init__(self, target: EncoderBlock) -> None:
        with self.setup_adapter(target):
            super().__init__(target, fl.SetContext(IMAGE_CONTEXT, EARLY_FEATURES))


class HQOutputTokens(fl.Concatenate, fl.Adapter[OutputTokens]):
    """SAM's output tokens, then the HQ token."""

    def __init__(self, target: OutputTokens, token: HQToken) -> None:
        with self.setup_adapter(target):
            super().__init__(target, token, dim=1)


class HQMaskPrediction(fl.Chain, fl.Adapter[MaskPrediction]):
    """SAM's masks, then the HQ mask: (tokens after the IoU token, upscaled image) → (B, M + 1, H, W).

    The HQ token is the one after SAM's mask tokens; the image embedding and the early features are
    read from the context.
    """

    def __init__(self, target: MaskPrediction, hq: HQSAM) -> None:
        with self.setup_adapter(target):
            super().__init__(target, hq)

    def forward(self, tokens: torch.Tensor, features: torch.Tensor) -> torch.Tensor:  # pyright: ignore[reportIncompatibleMethodOverride]
        sam_prediction, hq = self
        sam_masks = sam_prediction(tokens, features)
        hq_token = tokens[:, sam_masks.shape[1]]
        hq_mask = hq(hq_token, features, self._image_embedding(), self._early_features())
        return torch.cat([sam_masks, hq_mask], dim=1)

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
        hq: The HQ modules, made for a SAM of the target's widths (`zoo.load` of a `zoo convert` output,
            on the target's device and dtype); they run inside the target while injected. By default,
            new ones with their random initialisation.
        hq_token_only: Return the HQ mask alone instead of SAM's mask plus the HQ mask.

    Raises:
        ConfigError: `hq` is for another size of SAM, or the target's encoder has no global-attention block.
    """

    def __init__(self, target: SegmentAnything, hq: HQSAM | None = None, hq_token_only: bool = False) -> None:
        expected = HQSAMConfig.for_model(target.config)
        self.target = target
        self.hq = hq if hq is not None else HQSAM(expected, device=target.device, dtype=target.dtype)
        _check_fits(self.hq.config, expected)
        decoder = target.mask_decoder
        self.adapters: tuple[Any, ...] = (
            EarlyFeatures(target.image_encoder.blocks[first_global_block(target.config)]),
            HQOutputTokens(decoder.ensure_find(OutputTokens), self.hq.token),
            HQMaskPrediction(decoder.ensure_find(MaskPrediction), self.hq),
            HQMaskSelection(decoder.ensure_find(MaskSelection), hq_token_only),
        )

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


def _check_fits(found: HQSAMConfig, expected: HQSAMConfig) -> None:
    if (found.vit_dim, found.embed_dim) != (expected.vit_dim, expected.embed_dim):
        raise ConfigError(
            f"these HQ-SAM modules are for {found.describe()}; this SAM has {expected.describe()}",
            hint="use the HQ-SAM weights made for this size of SAM (sam_hq_vit_b.pth for ViT-B, ...)",
        )


__all__ = [
    "EARLY_FEATURES",
    "HQSAM",
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
    "first_global_block",
]

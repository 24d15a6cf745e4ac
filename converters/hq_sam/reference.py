"""The reference of the HQ-SAM conversions: SysCV's own HQ modules (`segment_anything_hq`'s `MaskDecoderHQ`).

An HQ-SAM checkpoint is a frozen SAM (the sam family converts it) plus five modules of `MaskDecoderHQ`:
`hf_token`, `hf_mlp`, `compress_vit_feat`, `embedding_encoder` and `embedding_maskfeature`. The
reference builds a `MaskDecoderHQ` of the upstream config's widths and keeps those five modules, under
those names. Its forward is the HQ branch of `MaskDecoderHQ.forward` and `predict_masks`, in their
order, on what the frozen SAM would give them:

    image embedding ─► embedding_encoder ─┐
    early ViT features ─► compress_vit_feat ─┴─► HQ features
    SAM's upscaled image ─► embedding_maskfeature ─► + HQ features ─┐
    the HQ token after the two-way transformer ─► hf_mlp ────────────┴─► HQ mask (B, 1, 4h, 4w)

and it also returns the learned token itself (`hf_token`, which the transformer reads), so parity covers
every weight. The upstream config (the part's `config.json`, of our own schema) holds `MaskDecoderHQ`'s
two widths: `{"transformer_dim": 256, "vit_dim": 768}`. `save_pretrained` writes it with the weights.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from converters._tracing import Overrides
from converters._tracing.keymap import IDENTITY, MapEntry
from zoo.errors import ConfigError
from zoo.foundationals.segment_anything.hq_sam import HQSAM, UPSCALED_CHANNELS, HQSAMConfig

SUBFOLDER = "hq_sam"
WEIGHTS_NAME = "model.safetensors"
HQ_MODULES = ("hf_token", "hf_mlp", "compress_vit_feat", "embedding_encoder", "embedding_maskfeature")
TOKEN_KEY = "hf_token.weight"
OUR_TOKEN_KEY = "HQToken.weight"
SYNTHETIC_NOISE = 0.1  # added to every weight of a synthetic reference, so norms are not identities
EXAMPLE_BATCH = 2  # prompts
EXAMPLE_GRID = 4  # side of the image embedding: the modules are convolutions, any size runs
UPSCALE = 4  # SAM's upscaled image, and the HQ features, are 4× the embedding's side
MISSING_PACKAGE_HINT = "pip install segment-anything-hq timm torchvision (its modelling code imports both)"


# -- configs ---------------------------------------------------------------------------------------


def upstream_config(config: HQSAMConfig) -> dict[str, Any]:
    """The upstream config for our config: `MaskDecoderHQ`'s widths."""
    return {"transformer_dim": config.embed_dim, "vit_dim": config.vit_dim}


def derive_config(upstream: Mapping[str, Any]) -> HQSAMConfig:
    """Our config from the upstream one (`MaskDecoderHQ` fixes the rest: 1e-6 norms, a 3-layer MLP).

    Raises:
        ConfigError: A width is missing, not an integer, or not one the modules can have.
    """
    try:
        return HQSAMConfig(vit_dim=int(upstream["vit_dim"]), embed_dim=int(upstream["transformer_dim"]))
    except (KeyError, TypeError, ValueError) as error:
        raise ConfigError(f"HQ-SAM config {dict(upstream)}: {error}") from error


# -- the reference ---------------------------------------------------------------------------------


def _mask_decoder_hq(config: Mapping[str, Any]) -> Any:
    """SysCV's `MaskDecoderHQ` of these widths (its SAM parts are built too, and dropped by the caller)."""
    try:
        with warnings.catch_warnings():
            # Its package registers TinyViT models in timm's registry, over timm's own, and warns.
            warnings.simplefilter("ignore")
            from segment_anything_hq.modeling.mask_decoder_hq import MaskDecoderHQ
    except ModuleNotFoundError as error:
        raise ConfigError(
            f"the HQ-SAM conversions trace against SysCV's segment_anything_hq, and {error.name} is not installed",
            hint=MISSING_PACKAGE_HINT,
        ) from error
    return MaskDecoderHQ(
        transformer_dim=int(config["transformer_dim"]),
        transformer=nn.Identity(),
        vit_dim=int(config["vit_dim"]),
    )


class HQSAMReference(nn.Module):
    """SysCV's HQ modules alone, under their `MaskDecoderHQ` names (see the module docstring)."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__()
        self.upstream_config = dict(config)
        decoder = _mask_decoder_hq(config)
        for name in HQ_MODULES:
            self.add_module(name, getattr(decoder, name))

    def forward(
        self,
        hq_token: torch.Tensor,
        upscaled_image: torch.Tensor,
        image_embedding: torch.Tensor,
        early_features: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(the learned token per prompt (B, 1, C), the HQ mask (B, 1, 4h, 4w)); early features NHWC."""
        modules: Any = self
        vit_features = early_features.permute(0, 3, 1, 2)
        hq_features = modules.embedding_encoder(image_embedding) + modules.compress_vit_feat(vit_features)
        batch, channels, height, width = upscaled_image.shape
        fused = modules.embedding_maskfeature(upscaled_image) + hq_features.repeat(batch, 1, 1, 1)
        weights = modules.hf_mlp(hq_token)[:, None]
        mask = (weights @ fused.view(batch, channels, height * width)).view(batch, -1, height, width)
        token = modules.hf_token.weight[None].expand(batch, -1, -1)
        return token, mask

    def save_pretrained(self, folder: str | Path) -> None:
        """config.json and the weights under the reference's names."""
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.json").write_text(json.dumps(self.upstream_config, indent=2, sort_keys=True) + "\n")
        state = {key: tensor.detach().contiguous() for key, tensor in self.state_dict().items()}
        save_file(state, path / WEIGHTS_NAME, metadata={"format": "pt"})


def build_reference(config: dict[str, Any]) -> nn.Module:
    """The reference for an upstream config, with seeded noise on every weight (free on meta)."""
    reference = HQSAMReference(config)
    with torch.no_grad():
        for parameter in reference.parameters():
            if parameter.device.type != "meta":  # nothing to perturb, and slow to pretend
                parameter.add_(torch.randn_like(parameter), alpha=SYNTHETIC_NOISE)
    return reference.eval()


def overrides(_config: HQSAMConfig) -> Overrides:
    """The original reads its token's weight without calling the embedding, so tracing never sees it run."""
    return Overrides(pairs=(MapEntry((TOKEN_KEY,), (OUR_TOKEN_KEY,), IDENTITY),))


# -- inputs and runs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class HQInputs:
    """What the frozen SAM gives the HQ modules for a few prompts on one image.

    Attributes:
        hq_token: The HQ token after the two-way transformer (B, C).
        upscaled_image: SAM's upscaled image embedding (B, C/8, 4h, 4w).
        image_embedding: The image embedding (1, C, h, w).
        early_features: The first global-attention block's output (1, h, w, vit_dim), channels last as
            the encoder blocks give it.
    """

    hq_token: torch.Tensor
    upscaled_image: torch.Tensor
    image_embedding: torch.Tensor
    early_features: torch.Tensor


def _random(shape: tuple[int, ...], generator: torch.Generator, device: Any, dtype: Any) -> torch.Tensor:
    if torch.device(device or "cpu").type == "meta":
        return torch.empty(shape, device=device, dtype=dtype)
    return torch.randn(shape, generator=generator).to(device=device, dtype=dtype)


def example_inputs(config: HQSAMConfig, device: Any = None, dtype: Any = None) -> HQInputs:
    """Seeded inputs of the config's widths (shapes only on meta)."""
    generator = torch.Generator().manual_seed(0)
    width, grid, big = config.embed_dim, EXAMPLE_GRID, EXAMPLE_GRID * UPSCALE
    return HQInputs(
        hq_token=_random((EXAMPLE_BATCH, width), generator, device, dtype),
        upscaled_image=_random(
            (EXAMPLE_BATCH, width // UPSCALED_CHANNELS, big, big), generator, device, dtype
        ),
        image_embedding=_random((1, width, grid, grid), generator, device, dtype),
        early_features=_random((1, grid, grid, config.vit_dim), generator, device, dtype),
    )


def run_reference(model: nn.Module, inputs: HQInputs) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference's token and HQ mask."""
    return model(inputs.hq_token, inputs.upscaled_image, inputs.image_embedding, inputs.early_features)


def run_ours(model: nn.Module, inputs: HQInputs) -> tuple[torch.Tensor, torch.Tensor]:
    """The same from our `HQSAM`: its token for each prompt, and its HQ mask."""
    if not isinstance(model, HQSAM):
        raise TypeError(f"expected an HQSAM, got {type(model).__name__}")
    token = model.token(inputs.hq_token[:, None])
    early = inputs.early_features.permute(0, 3, 1, 2)
    return token, model(inputs.hq_token, inputs.upscaled_image, inputs.image_embedding, early)


__all__ = [
    "HQ_MODULES",
    "SUBFOLDER",
    "WEIGHTS_NAME",
    "HQInputs",
    "HQSAMReference",
    "build_reference",
    "derive_config",
    "example_inputs",
    "overrides",
    "run_ours",
    "run_reference",
    "upstream_config",
]

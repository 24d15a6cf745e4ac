"""CLIP image encoders in transformers' layout: configs, the reference model, file keys, inputs and runs.

The reference is transformers' `CLIPVisionModelWithProjection`, built from a `clip_vision_model`
config.json (h94/IP-Adapter's `image_encoder` folders) or from the `vision_config` of a whole
`clip` model's config.json (openai/clip-vit-large-patch14), whose files also hold the text tower:
those tensors are ignored, with the reason. Tracing needs no overrides: transformers runs the class
token, patches, positions, the layers' q, k, v and out projections in the order our model does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import torch
from torch import nn

from converters.declaration import KeyNormalization, PinnedFile, Shape, UpstreamPart
from zoo.errors import ConfigError
from zoo.foundationals.clip.image_encoder import CLIPImageEncoder, CLIPImageEncoderConfig
from zoo.foundationals.clip.transformer_layer import ACTIVATIONS

SUPPORTED_ACTIVATIONS = ACTIVATIONS  # what our layers implement
SUBFOLDER = "image_encoder"  # as in a diffusers pipeline with an image encoder
VISION_PREFIX = "vision_model."
PROJECTION_KEY = "visual_projection.weight"
POSITION_IDS = "vision_model.embeddings.position_ids"
POSITION_IDS_REASON = "position ids 0..positions-1, saved by older transformers as a buffer: no weights"
TEXT_TOWER_REASON = "the text tower of a whole CLIP model: not part of the image encoder"
TEXT_TOWER_KEYS = ("text_model.", "text_projection.", "logit_scale")
EXAMPLE_BATCH = 2


# -- configs --------------------------------------------------------------------------------------


def _defaults() -> dict[str, Any]:
    """What transformers' `CLIPVisionConfig` assumes for a field a config.json leaves out."""
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig().to_dict()


def vision_config(upstream: Mapping[str, Any]) -> dict[str, Any]:
    """The vision tower's config: a `clip_vision_model` config, or the `vision_config` of a `clip` one.

    A whole CLIP config's top-level `projection_dim` is not read, as transformers'
    `CLIPVisionConfig.from_pretrained` does not read it either.
    """
    model_type = upstream.get("model_type", "clip_vision_model")
    if model_type == "clip":
        return dict(upstream.get("vision_config") or {})
    if model_type != "clip_vision_model":
        raise ConfigError(f"model_type={model_type!r}: expected 'clip_vision_model' or 'clip'")
    return dict(upstream)


def derive_image_encoder_config(upstream: Mapping[str, Any]) -> CLIPImageEncoderConfig:
    """Our config from a transformers CLIP vision config (`config.json` content).

    Raises:
        ConfigError: The activation is not one CLIP uses, or the sizes do not divide.
    """
    fields = {**_defaults(), **vision_config(upstream)}
    if fields["hidden_act"] not in SUPPORTED_ACTIVATIONS:
        raise ConfigError(f"hidden_act={fields['hidden_act']!r}: expected one of {SUPPORTED_ACTIVATIONS}")
    try:
        return CLIPImageEncoderConfig(
            image_size=fields["image_size"],
            patch_size=fields["patch_size"],
            num_channels=fields["num_channels"],
            hidden_size=fields["hidden_size"],
            num_layers=fields["num_hidden_layers"],
            num_heads=fields["num_attention_heads"],
            intermediate_size=fields["intermediate_size"],
            activation=fields["hidden_act"],
            layer_norm_eps=fields["layer_norm_eps"],
            projection_dim=fields["projection_dim"],
        )
    except ValueError as error:
        raise ConfigError(f"inconsistent CLIP vision config: {error}") from error


def upstream_image_encoder_config(config: CLIPImageEncoderConfig) -> dict[str, Any]:
    """The transformers `config.json` content of the same encoder (inverse of `derive_image_encoder_config`)."""
    return {
        "architectures": ["CLIPVisionModelWithProjection"],
        "model_type": "clip_vision_model",
        "image_size": config.image_size,
        "patch_size": config.patch_size,
        "num_channels": config.num_channels,
        "hidden_size": config.hidden_size,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "intermediate_size": config.intermediate_size,
        "hidden_act": config.activation,
        "layer_norm_eps": config.layer_norm_eps,
        "projection_dim": config.projection_dim,
        "attention_dropout": 0.0,
    }


# -- the reference --------------------------------------------------------------------------------


def build_reference(upstream: dict[str, Any]) -> nn.Module:
    """transformers' `CLIPVisionModelWithProjection` for a config.json (random weights; free on meta)."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    config = CLIPVisionConfig.from_dict(vision_config(upstream))
    # Seen as a plain module: transformers' decorated `eval` confuses type checkers.
    model = cast(nn.Module, CLIPVisionModelWithProjection(config))
    return model.eval()


def normalize_image_encoder_keys(shapes: Mapping[str, Shape]) -> KeyNormalization:
    """File names are the model's; old files add `position_ids`, whole-CLIP files the text tower."""
    renames: dict[str, str] = {}
    ignored: dict[str, str] = {}
    for key in shapes:
        if key == POSITION_IDS:
            ignored[key] = POSITION_IDS_REASON
        elif key.startswith(TEXT_TOWER_KEYS):
            ignored[key] = TEXT_TOWER_REASON
        else:
            renames[key] = key
    return KeyNormalization(renames, ignored)


def image_encoder_part(pinned: PinnedFile | None = None, repo_folder: str | None = None) -> UpstreamPart:
    """A transformers image encoder folder, as a pipeline's `image_encoder` subfolder holds it."""
    return UpstreamPart(
        SUBFOLDER,
        "transformers.CLIPVisionModelWithProjection",
        build_reference,
        normalize_keys=normalize_image_encoder_keys,
        pinned=pinned,
        repo_folder=repo_folder,
    )


# -- inputs and runs ------------------------------------------------------------------------------


def example_pixels(
    config: CLIPImageEncoderConfig, device: torch.device | str | None = None, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Seeded, normalised-looking pixels (B, C, S, S); drawn on the CPU, then moved (shapes only on meta)."""
    shape = (EXAMPLE_BATCH, config.num_channels, config.image_size, config.image_size)
    generator = torch.Generator().manual_seed(0)
    return torch.randn(shape, generator=generator).to(device=device, dtype=dtype)


def run_reference(model: nn.Module, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """transformers' outputs: the image embedding, `hidden_states[-2]` and the last hidden state."""
    output = model(pixels, output_hidden_states=True)
    return output.image_embeds, output.hidden_states[-2], output.last_hidden_state


def run_encoder(model: nn.Module, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Our outputs, in the reference's order."""
    if not isinstance(model, CLIPImageEncoder):
        raise TypeError(f"expected a CLIPImageEncoder, got {type(model).__name__}")
    return tuple(model.encode(pixels))  # pyright: ignore[reportReturnType]


__all__ = [
    "SUBFOLDER",
    "build_reference",
    "derive_image_encoder_config",
    "example_pixels",
    "image_encoder_part",
    "normalize_image_encoder_keys",
    "run_encoder",
    "run_reference",
    "upstream_image_encoder_config",
    "vision_config",
]

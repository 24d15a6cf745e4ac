"""The UNet of SD 1.5 and SDXL: our config from diffusers' `UNet2DConditionModel` config, and back.

`derive_unet_config` reads a `unet/config.json` dict. Every field is accounted for: the ones that shape
the architecture become `UNetConfig` fields, the ones our model does not implement are accepted only at
the one value it supports (anything else raises `ConfigError` naming the field and the value), and the
few that cannot change the weights or the computation (`sample_size`, `dropout`, ...) are ignored on
purpose. An unknown field is an error too: it may be a new architecture switch.

`unet_example_inputs` builds the inputs tracing and parity run both models on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from zoo.errors import ConfigError
from zoo.foundationals.latent_diffusion.unet import UNet, UNetConfig

SDXL_TIME_IDS = 6
"""Time ids per sample in SDXL's added conditioning: original (h, w), crop (top, left), target (h, w)."""

# Upstream fields our model implements only at one value (the diffusers default, but for mid-block
# cross-attention where False and None mean the same).
_FIXED: dict[str, tuple[object, ...]] = {
    "center_input_sample": (False,),
    "mid_block_type": ("UNetMidBlock2DCrossAttn",),
    "downsample_padding": (1,),
    "mid_block_scale_factor": (1,),
    "act_fn": ("silu",),
    "reverse_transformer_layers_per_block": (None,),
    "encoder_hid_dim": (None,),
    "encoder_hid_dim_type": (None,),
    "num_attention_heads": (None,),
    "dual_cross_attention": (False,),
    "class_embed_type": (None,),
    "num_class_embeds": (None,),
    "upcast_attention": (False,),
    "resnet_time_scale_shift": ("default",),
    "resnet_skip_time_act": (False,),
    "resnet_out_scale_factor": (1,),
    "time_embedding_type": ("positional",),
    "time_embedding_act_fn": (None,),
    "timestep_post_act": (None,),
    "conv_in_kernel": (3,),
    "conv_out_kernel": (3,),
    "attention_type": ("default",),
    "class_embeddings_concat": (False,),
    "mid_block_only_cross_attention": (None, False),
    "cross_attention_norm": (None,),
}

# Upstream fields that change neither the weights nor the computation of a forward pass.
_IGNORED = {
    "dropout": "dropout is off at inference",
    "addition_embed_type_num_heads": "only used by addition_embed_type='text', which is not supported",
}

# Upstream fields that shape the architecture, with diffusers' defaults for a config that omits them.
_DEFAULTS: dict[str, Any] = {
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": (320, 640, 1280, 1280),
    "down_block_types": (
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "only_cross_attention": False,
    "layers_per_block": 2,
    "transformer_layers_per_block": 1,
    "attention_head_dim": 8,
    "cross_attention_dim": 1280,
    "use_linear_projection": False,
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "addition_embed_type": None,
    "addition_time_embed_dim": None,
    "projection_class_embeddings_input_dim": None,
    "time_embedding_dim": None,
    "time_cond_proj_dim": None,
    "sample_size": None,  # changes no weight; kept as the default image size
}

_DOWN = {"DownBlock2D": False, "CrossAttnDownBlock2D": True}
_UP = {False: "UpBlock2D", True: "CrossAttnUpBlock2D"}
_HINT = "this conversion supports SD 1.x and SDXL-style UNet2DConditionModel configs"


def _unsupported(field: str, value: object, supported: str) -> ConfigError:
    return ConfigError(f"unsupported UNet config: {field}={value!r} ({supported})", hint=_HINT)


def _check_fields(upstream: Mapping[str, Any]) -> None:
    for field, value in upstream.items():
        if field.startswith("_") or field in _IGNORED or field in _DEFAULTS:
            continue
        if field not in _FIXED:
            raise _unsupported(field, value, "unknown field: it may change the architecture")
        if value not in _FIXED[field]:
            allowed = " or ".join(repr(v) for v in _FIXED[field])
            raise _unsupported(field, value, f"only {allowed} is supported")


def _per_level(upstream: Mapping[str, Any], field: str, levels: int) -> tuple[int, ...]:
    """A field given as one int for every level or as one int per level."""
    value = upstream.get(field, _DEFAULTS[field])
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,) * levels
    if isinstance(value, Sequence) and len(value) == levels and all(isinstance(v, int) for v in value):
        return tuple(int(v) for v in value)
    raise _unsupported(field, value, f"expected an int or {levels} ints, one per level")


def _uniform(upstream: Mapping[str, Any], field: str, levels: int) -> int:
    """A field that diffusers allows per level but that our model shares between levels."""
    values = set(_per_level(upstream, field, levels))
    if len(values) != 1:
        raise _unsupported(field, upstream.get(field), "only the same value for every level is supported")
    return values.pop()


def _cross_attention_levels(upstream: Mapping[str, Any]) -> tuple[bool, ...]:
    down = list(upstream.get("down_block_types", _DEFAULTS["down_block_types"]))
    unknown = [kind for kind in down if kind not in _DOWN]
    if unknown:
        raise _unsupported("down_block_types", down, f"only {sorted(_DOWN)} are supported")
    levels = tuple(_DOWN[kind] for kind in down)
    up = list(upstream.get("up_block_types", _DEFAULTS["up_block_types"]))
    mirrored = [_UP[cross] for cross in reversed(levels)]
    if up != mirrored:
        raise _unsupported("up_block_types", up, f"must mirror down_block_types: {mirrored}")
    only_cross = upstream.get("only_cross_attention", False)
    if only_cross is not False and (not isinstance(only_cross, Sequence) or any(only_cross)):
        raise _unsupported("only_cross_attention", only_cross, "only False is supported")
    return levels


def _added_conditioning(upstream: Mapping[str, Any]) -> dict[str, Any]:
    kind = upstream.get("addition_embed_type")
    time_dim = upstream.get("addition_time_embed_dim")
    input_dim = upstream.get("projection_class_embeddings_input_dim")
    if kind is None:
        return {
            "addition_embed_type": None,
            "addition_time_embed_dim": None,
            "addition_embed_input_dim": None,
        }
    if kind != "text_time":
        raise _unsupported("addition_embed_type", kind, "only 'text_time' (SDXL) or None is supported")
    if time_dim is None or input_dim is None:
        missing = "addition_time_embed_dim" if time_dim is None else "projection_class_embeddings_input_dim"
        raise _unsupported(missing, None, "addition_embed_type='text_time' needs it")
    return {
        "addition_embed_type": kind,
        "addition_time_embed_dim": time_dim,
        "addition_embed_input_dim": input_dim,
    }


def derive_unet_config(upstream: Mapping[str, Any]) -> UNetConfig:
    """Our `UNetConfig` from a diffusers `UNet2DConditionModel` config dict (`unet/config.json`).

    Raises:
        ConfigError: A field has a value our model does not implement, or is unknown; the message
            names the field and the value.
    """
    _check_fields(upstream)
    channels = tuple(int(c) for c in upstream.get("block_out_channels", _DEFAULTS["block_out_channels"]))
    levels = len(channels)
    cross_levels = _cross_attention_levels(upstream)
    if len(cross_levels) != levels:
        raise _unsupported("down_block_types", upstream.get("down_block_types"), f"expected {levels} blocks")

    def get(field: str) -> Any:
        return upstream.get(field, _DEFAULTS[field])

    norm_groups = get("norm_num_groups")
    if norm_groups is None:
        raise _unsupported("norm_num_groups", None, "the output group norm is required")
    try:
        return UNetConfig(
            in_channels=get("in_channels"),
            out_channels=get("out_channels"),
            block_channels=channels,
            cross_attention_levels=cross_levels,
            layers_per_block=_uniform(upstream, "layers_per_block", levels),
            transformer_depth=_per_level(upstream, "transformer_layers_per_block", levels),
            num_heads=_per_level(upstream, "attention_head_dim", levels),
            cross_attention_dim=_uniform(upstream, "cross_attention_dim", levels),
            use_linear_projection=get("use_linear_projection"),
            norm_groups=norm_groups,
            norm_eps=get("norm_eps"),
            time_embedding_dim=get("time_embedding_dim") or 4 * channels[0],
            flip_sin_to_cos=get("flip_sin_to_cos"),
            freq_shift=get("freq_shift"),
            time_cond_proj_dim=get("time_cond_proj_dim"),
            sample_size=_sample_size(upstream.get("sample_size")),
            **_added_conditioning(upstream),
        )
    except ValueError as error:
        raise ConfigError(f"inconsistent UNet config: {error}", hint=_HINT) from error


def _sample_size(value: Any) -> int | None:
    """diffusers allows a (height, width) pair; a square one is kept, anything else is unknown."""
    if isinstance(value, list | tuple) and len(value) == 2 and value[0] == value[1]:  # pyright: ignore[reportUnknownArgumentType]
        value = value[0]  # pyright: ignore[reportUnknownVariableType]
    return int(value) if isinstance(value, int) else None


# Fixed in diffusers' code (not in its config): a config differing here has no upstream equivalent.
_UPSTREAM_CONSTANTS = {"transformer_norm_eps": 1e-6, "layer_norm_eps": 1e-5, "feedforward_multiplier": 4}


def diffusers_unet_config(config: UNetConfig) -> dict[str, Any]:
    """The diffusers `UNet2DConditionModel` config of the same architecture (inverse of `derive_unet_config`).

    Raises:
        ConfigError: The config sets a value that diffusers hard-codes to another one.
    """
    for field, value in _UPSTREAM_CONSTANTS.items():
        if getattr(config, field) != value:
            raise ConfigError(
                f"{field}={getattr(config, field)!r} has no diffusers equivalent (fixed at {value!r})"
            )
    return {
        "in_channels": config.in_channels,
        "out_channels": config.out_channels,
        "block_out_channels": list(config.block_channels),
        "down_block_types": [_UP[cross].replace("Up", "Down") for cross in config.cross_attention_levels],
        "up_block_types": [_UP[cross] for cross in reversed(config.cross_attention_levels)],
        "layers_per_block": config.layers_per_block,
        "transformer_layers_per_block": list(config.transformer_depth),
        "attention_head_dim": list(config.num_heads),
        "cross_attention_dim": config.cross_attention_dim,
        "use_linear_projection": config.use_linear_projection,
        "norm_num_groups": config.norm_groups,
        "norm_eps": config.norm_eps,
        "time_embedding_dim": config.time_embedding_dim,
        "flip_sin_to_cos": config.flip_sin_to_cos,
        "freq_shift": config.freq_shift,
        "time_cond_proj_dim": config.time_cond_proj_dim,
        "addition_embed_type": config.addition_embed_type,
        "addition_time_embed_dim": config.addition_time_embed_dim,
        "projection_class_embeddings_input_dim": config.addition_embed_input_dim,
        "upcast_attention": config.upcast_attention,
        "sample_size": config.sample_size,
    }


# -- example inputs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class UNetExampleInputs:
    """One set of UNet inputs, runnable on the diffusers model and on ours (see `unet_example_inputs`).

    Attributes:
        latents: (B, in_channels, H, W).
        timestep: (B,) timesteps.
        text_embedding: (B, L, cross_attention_dim).
        pooled_text_embedding: SDXL: (B, addition_embed_input_dim - 6 × addition_time_embed_dim).
        time_ids: SDXL: (B, 6).
        timestep_condition: LCM: (B, time_cond_proj_dim).
    """

    latents: torch.Tensor
    timestep: torch.Tensor
    text_embedding: torch.Tensor
    pooled_text_embedding: torch.Tensor | None = None
    time_ids: torch.Tensor | None = None
    timestep_condition: torch.Tensor | None = None

    def run_upstream(self, model: nn.Module) -> torch.Tensor:
        """Run a diffusers `UNet2DConditionModel`; returns its prediction."""
        added = None
        if self.pooled_text_embedding is not None and self.time_ids is not None:
            added = {"text_embeds": self.pooled_text_embedding, "time_ids": self.time_ids}
        output = model(
            self.latents,
            self.timestep,
            encoder_hidden_states=self.text_embedding,
            timestep_cond=self.timestep_condition,
            added_cond_kwargs=added,
            return_dict=False,
        )
        return output[0]

    def run_target(self, model: nn.Module) -> torch.Tensor:
        """Run our `UNet`; returns its prediction."""
        if not isinstance(model, UNet):
            raise TypeError(f"expected a UNet, got {type(model).__name__}")
        return model.denoise(
            self.latents,
            self.timestep,
            self.text_embedding,
            pooled=self.pooled_text_embedding,
            time_ids=self.time_ids,
            timestep_condition=self.timestep_condition,
        )


def unet_example_inputs(
    config: UNetConfig,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    *,
    batch_size: int = 1,
    latent_size: int | None = None,
    text_length: int = 77,
    seed: int = 0,
) -> UNetExampleInputs:
    """Seeded inputs for `config`: random latents and embeddings, timestep 999, SDXL ids of a 1024² image.

    On `meta` only the shapes matter; elsewhere the values are reproducible from `seed` (drawn on the
    CPU, then moved), whatever the device.

    Args:
        config: The architecture the inputs are for.
        device: Where the tensors go.
        dtype: Dtype of the floating-point tensors (the timestep stays an integer).
        batch_size: B.
        latent_size: H = W; by default the smallest multiple of `config.downscale_factor` from 16 on.
        text_length: L, the number of text tokens.
        seed: Seed of the random values.
    """
    factor = config.downscale_factor
    size = latent_size if latent_size is not None else max(16, factor)
    generator = torch.Generator().manual_seed(seed)

    def draw(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator).to(device=device, dtype=dtype)

    latents = draw(batch_size, config.in_channels, size, size)
    text = draw(batch_size, text_length, config.cross_attention_dim)
    timestep = torch.full((batch_size,), 999, dtype=torch.long).to(device)
    pooled = time_ids = condition = None
    if config.addition_embed_type == "text_time":
        assert config.addition_embed_input_dim is not None and config.addition_time_embed_dim is not None
        pooled = draw(
            batch_size, config.addition_embed_input_dim - SDXL_TIME_IDS * config.addition_time_embed_dim
        )
        ids = torch.tensor([[1024.0, 1024.0, 0.0, 0.0, 1024.0, 1024.0]]).expand(batch_size, SDXL_TIME_IDS)
        time_ids = ids.to(device=device, dtype=dtype)
    if config.time_cond_proj_dim is not None:
        condition = draw(batch_size, config.time_cond_proj_dim)
    return UNetExampleInputs(latents, timestep, text, pooled, time_ids, condition)


__all__ = [
    "SDXL_TIME_IDS",
    "UNetExampleInputs",
    "derive_unet_config",
    "diffusers_unet_config",
    "unet_example_inputs",
]

"""ControlNets in diffusers' layout: our config from a `ControlNetModel` config.json and back, tiny
configs, example inputs, and how each model runs on them.

A `ControlNetModel` config is a `UNet2DConditionModel` config without the up path, plus the condition
encoder's fields; the UNet part goes through the UNet's own derivation (`derive_unet_config`), so the
same fields are accepted and refused, with the same messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from converters.stable_diffusion.unet import (
    UNetExampleInputs,
    derive_unet_config,
    diffusers_unet_config,
    unet_example_inputs,
)
from zoo.errors import ConfigError
from zoo.foundationals.controlnet import ControlNet, ControlNetConfig
from zoo.foundationals.latent_diffusion.unet import UNetConfig

# Fields of a ControlNetModel config that a UNet2DConditionModel config does not have.
_CONDITION_FIELDS = (
    "conditioning_channels",
    "controlnet_conditioning_channel_order",
    "conditioning_embedding_out_channels",
    "global_pool_conditions",
)
# UNet fields a ControlNetModel does not take (no up path, no output; diffusers derives the rest).
_UNET_ONLY = ("out_channels", "up_block_types", "time_embedding_dim", "time_cond_proj_dim", "sample_size")
_DEFAULT_EMBEDDING = (16, 32, 96, 256)
_HINT = "this conversion supports diffusers ControlNetModel configs of SD 1.x and SDXL UNets"


def derive_controlnet_config(upstream: Mapping[str, Any]) -> ControlNetConfig:
    """Our `ControlNetConfig` from a diffusers `ControlNetModel` config dict.

    Raises:
        ConfigError: A field has a value our model does not implement (the message names it).
    """
    order = upstream.get("controlnet_conditioning_channel_order", "rgb")
    if order != "rgb":
        raise ConfigError(
            f"unsupported ControlNet config: controlnet_conditioning_channel_order={order!r}", hint=_HINT
        )
    unet = {key: value for key, value in upstream.items() if key not in _CONDITION_FIELDS}
    down = unet.get("down_block_types", ())
    unet["up_block_types"] = [kind.replace("Down", "Up") for kind in reversed(list(down))]
    embedding = upstream.get("conditioning_embedding_out_channels") or _DEFAULT_EMBEDDING
    try:
        return ControlNetConfig(
            unet=derive_unet_config(unet),
            conditioning_channels=int(upstream.get("conditioning_channels", 3)),
            embedding_channels=tuple(int(c) for c in embedding),
            global_pool_conditions=bool(upstream.get("global_pool_conditions", False)),
        )
    except ValueError as error:
        raise ConfigError(f"inconsistent ControlNet config: {error}", hint=_HINT) from error


def diffusers_controlnet_config(config: ControlNetConfig) -> dict[str, Any]:
    """The diffusers `ControlNetModel` config of the same architecture (inverse of `derive_controlnet_config`)."""
    unet = diffusers_unet_config(config.unet)
    if unet["time_embedding_dim"] != 4 * config.unet.block_channels[0] or config.unet.time_cond_proj_dim:
        raise ConfigError("a ControlNetModel has neither its own time_embedding_dim nor a time_cond_proj_dim")
    return {key: value for key, value in unet.items() if key not in _UNET_ONLY} | {
        "conditioning_channels": config.conditioning_channels,
        "conditioning_embedding_out_channels": list(config.embedding_channels),
        "global_pool_conditions": config.global_pool_conditions,
    }


def tiny_controlnet_config(unet: Mapping[str, Any]) -> dict[str, Any]:
    """A tiny `ControlNetModel` config copying a tiny UNet config (as `ControlNetModel.from_unet` does)."""
    kept = {key: value for key, value in unet.items() if key not in _UNET_ONLY}
    return kept | {"conditioning_embedding_out_channels": [8, 8, 16, 16]}


# -- example inputs and runs ------------------------------------------------------------------------


@dataclass(frozen=True)
class ControlNetInputs:
    """UNet inputs plus a condition image (B, C, 8H, 8W) in [0, 1]."""

    unet: UNetExampleInputs
    condition: torch.Tensor

    def run_upstream(self, model: nn.Module) -> tuple[torch.Tensor, ...]:
        """Run a diffusers `ControlNetModel`: its residuals, the middle block's last."""
        inputs = self.unet
        added = None
        if inputs.pooled_text_embedding is not None and inputs.time_ids is not None:
            added = {"text_embeds": inputs.pooled_text_embedding, "time_ids": inputs.time_ids}
        down, middle = model(
            inputs.latents,
            inputs.timestep,
            encoder_hidden_states=inputs.text_embedding,
            controlnet_cond=self.condition,
            added_cond_kwargs=added,
            return_dict=False,
        )
        return (*down, middle)

    def run_target(self, model: nn.Module) -> tuple[torch.Tensor, ...]:
        """Run our `ControlNet`."""
        if not isinstance(model, ControlNet):
            raise TypeError(f"expected a ControlNet, got {type(model).__name__}")
        inputs = self.unet
        return model.residuals(
            inputs.latents,
            self.condition,
            inputs.timestep,
            inputs.text_embedding,
            inputs.pooled_text_embedding,
            inputs.time_ids,
        )


def controlnet_example_inputs(
    config: ControlNetConfig, device: torch.device | str | None = None, dtype: torch.dtype | None = None
) -> ControlNetInputs:
    """Seeded UNet inputs and a condition image of the matching size."""
    unet = unet_example_inputs(config.unet, device, dtype)
    size = unet.latents.shape[-1] * config.downscale_factor
    generator = torch.Generator().manual_seed(1)
    condition = torch.rand(1, config.conditioning_channels, size, size, generator=generator)
    return ControlNetInputs(unet, condition.to(device=device, dtype=dtype))


def unet_of(config: ControlNetConfig) -> UNetConfig:
    """The UNet a ControlNet fits."""
    return config.unet


__all__ = [
    "ControlNetInputs",
    "controlnet_example_inputs",
    "derive_controlnet_config",
    "diffusers_controlnet_config",
    "tiny_controlnet_config",
    "unet_of",
]

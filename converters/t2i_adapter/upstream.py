"""T2I-Adapters in diffusers' layout: our config from a `T2IAdapter` config.json and back, example
inputs, and how each model runs on them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from zoo.errors import ConfigError
from zoo.foundationals.t2i_adapter import T2IAdapter, T2IAdapterConfig
from zoo.foundationals.t2i_adapter.t2i_adapter import AdapterKind

SUBFOLDER = "adapter"
KIND_OF_TYPE: dict[str, AdapterKind] = {
    "full_adapter": "full",
    "full_adapter_xl": "full_xl",
    "light_adapter": "light",
}
TYPE_OF_KIND = {kind: adapter_type for adapter_type, kind in KIND_OF_TYPE.items()}
_FIELDS = {"in_channels", "channels", "num_res_blocks", "downscale_factor", "adapter_type"}
_HINT = "this conversion supports diffusers T2IAdapter configs (full_adapter, full_adapter_xl, light_adapter)"


def derive_t2i_config(upstream: Mapping[str, Any]) -> T2IAdapterConfig:
    """Our `T2IAdapterConfig` from a diffusers `T2IAdapter` config dict.

    Raises:
        ConfigError: An unknown field or adapter type (named in the message).
    """
    unknown = sorted(key for key in upstream if not key.startswith("_") and key not in _FIELDS)
    if unknown:
        raise ConfigError(f"unsupported T2IAdapter config: unknown field(s) {unknown}", hint=_HINT)
    adapter_type = upstream.get("adapter_type", "full_adapter")
    if adapter_type not in KIND_OF_TYPE:
        raise ConfigError(f"unsupported T2IAdapter config: adapter_type={adapter_type!r}", hint=_HINT)
    try:
        return T2IAdapterConfig(
            in_channels=int(upstream.get("in_channels", 3)),
            channels=tuple(int(c) for c in upstream.get("channels", (320, 640, 1280, 1280))),
            num_res_blocks=int(upstream.get("num_res_blocks", 2)),
            downscale_factor=int(upstream.get("downscale_factor", 8)),
            kind=KIND_OF_TYPE[adapter_type],
        )
    except ValueError as error:
        raise ConfigError(f"inconsistent T2IAdapter config: {error}", hint=_HINT) from error


def diffusers_t2i_config(config: T2IAdapterConfig) -> dict[str, Any]:
    """The diffusers `T2IAdapter` config of the same architecture."""
    return {
        "in_channels": config.in_channels,
        "channels": list(config.channels),
        "num_res_blocks": config.num_res_blocks,
        "downscale_factor": config.downscale_factor,
        "adapter_type": TYPE_OF_KIND[config.kind],
    }


def t2i_example_inputs(
    config: T2IAdapterConfig, device: torch.device | str | None = None, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """A seeded condition image whose size every block can halve evenly."""
    size = config.downscale_factor * 2 ** len(config.blocks)
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(1, config.in_channels, size, size, generator=generator)
    return image.to(device=device, dtype=dtype)


def run_upstream(model: nn.Module, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return tuple(model(image))


def run_target(model: nn.Module, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
    if not isinstance(model, T2IAdapter):
        raise TypeError(f"expected a T2IAdapter, got {type(model).__name__}")
    return model(image)


__all__ = [
    "SUBFOLDER",
    "derive_t2i_config",
    "diffusers_t2i_config",
    "run_target",
    "run_upstream",
    "t2i_example_inputs",
]

"""The UNet's resnet blocks: two convolutions with the context's timestep embedding injected between."""

from __future__ import annotations

from typing import TYPE_CHECKING

import zoo.fluxion as fl
from zoo.fluxion.layers.weighted import Device, DType
from zoo.foundationals.latent_diffusion.unet_context import CONTEXT

if TYPE_CHECKING:
    from zoo.foundationals.latent_diffusion.unet import UNetConfig


class TimestepInjection(fl.Residual):
    """Adds the projected timestep embedding to every pixel of each channel."""

    def __init__(
        self, time_embedding_dim: int, channels: int, device: Device = None, dtype: DType = None
    ) -> None:
        super().__init__(
            fl.UseContext(CONTEXT, "timestep_embedding"),
            fl.SiLU(),
            fl.Linear(time_embedding_dim, channels, device=device, dtype=dtype),
            fl.Reshape(channels, 1, 1),
        )


class ResnetBlock(fl.Sum):
    """Two normalised, activated 3×3 convolutions with the timestep injected between, plus a shortcut.

    The shortcut (a 1×1 convolution when the channels change) runs after the main path, as upstream's.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        config: UNetConfig,
        device: Device = None,
        dtype: DType = None,
    ) -> None:
        groups, eps = config.norm_groups, config.norm_eps
        super().__init__(
            fl.Chain(
                fl.GroupNorm(groups, in_channels, eps=eps, device=device, dtype=dtype),
                fl.SiLU(),
                fl.Conv2d(in_channels, out_channels, 3, padding=1, device=device, dtype=dtype),
                TimestepInjection(config.time_embedding_dim, out_channels, device, dtype),
                fl.GroupNorm(groups, out_channels, eps=eps, device=device, dtype=dtype),
                fl.SiLU(),
                fl.Conv2d(out_channels, out_channels, 3, padding=1, device=device, dtype=dtype),
            ),
            fl.Conv2d(in_channels, out_channels, 1, device=device, dtype=dtype)
            if in_channels != out_channels
            else fl.Identity(),
        )


__all__ = ["ResnetBlock", "TimestepInjection"]

"""Up- and downsampling of (B, C, H, W) feature maps."""

from __future__ import annotations

from zoo.fluxion.chain import Chain
from zoo.fluxion.layers.basics import Interpolate, Pad
from zoo.fluxion.layers.weighted import Conv2d, Device, DType


class Downsample(Chain):
    """Halves the resolution with a stride-2 3×3 convolution.

    `padding=0` pads right and bottom by one first (the autoencoder's asymmetric padding).

    Example:
        >>> import torch, zoo.fluxion as fl
        >>> fl.Downsample(4)(torch.randn(1, 4, 8, 8)).shape
        torch.Size([1, 4, 4, 4])
    """

    def __init__(
        self,
        channels: int,
        padding: int = 1,
        out_channels: int | None = None,
        device: Device = None,
        dtype: DType = None,
    ) -> None:
        self.channels, self.padding = channels, padding
        conv = Conv2d(
            channels, out_channels or channels, 3, stride=2, padding=padding, device=device, dtype=dtype
        )
        super().__init__(*([Pad((0, 1, 0, 1)), conv] if padding == 0 else [conv]))


class Upsample(Chain):
    """Doubles the resolution (nearest) then applies a 3×3 convolution.

    Example:
        >>> import torch, zoo.fluxion as fl
        >>> fl.Upsample(4)(torch.randn(1, 4, 8, 8)).shape
        torch.Size([1, 4, 16, 16])
    """

    def __init__(
        self, channels: int, out_channels: int | None = None, device: Device = None, dtype: DType = None
    ) -> None:
        self.channels = channels
        super().__init__(
            Interpolate(scale_factor=2.0, mode="nearest"),
            Conv2d(channels, out_channels or channels, 3, padding=1, device=device, dtype=dtype),
        )


__all__ = ["Downsample", "Upsample"]

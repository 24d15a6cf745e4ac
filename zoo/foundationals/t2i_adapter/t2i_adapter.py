"""T2I-Adapter: a small convolutional network turning a condition image into features for the UNet's
down path, one per level.

Paper: Mou et al., "T2I-Adapter: Learning Adapters to Dig out More Controllable Ability for
Text-to-Image Diffusion Models" (2023), https://arxiv.org/abs/2302.08453. Upstream:
https://github.com/TencentARC/T2I-Adapter (original: `Adapter`, `Adapter_light`, `Adapter_XL`) and the
diffusers `T2IAdapter` (`diffusers/models/adapter.py`), whose execution order this model follows so that
weights convert by key tracing. Weights: TencentARC's adapters under the Apache-2.0 licence.

How it runs: the condition image is folded into channels (pixel unshuffle), then goes through a
sequence of blocks; each block's output is a feature, added to the UNet's down path by the adapter in
`zoo.foundationals.t2i_adapter.injection`. Three kinds:

- `full` (SD 1.4/1.5 `t2iadapter_*_sd14v1`): an input convolution, then per level a block of residual
  blocks (3×3 conv, ReLU, 1×1 conv), every level after the first halving the resolution first;
- `full_xl` (SDXL): the same blocks, laid out for SDXL's levels (the second block changes channels
  without halving, the third halves);
- `light` (`t2iadapter_color_sd14v1`): blocks that narrow to a quarter of their channels, run residual
  blocks of two 3×3 convs there and widen back.

Example:
    >>> import torch
    >>> adapter = T2IAdapter(T2IAdapterConfig.tiny_full())
    >>> [tuple(f.shape) for f in adapter(torch.zeros(1, 3, 64, 64))]
    [(1, 32, 8, 8), (1, 64, 4, 4)]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch.nn import functional as F

import zoo.fluxion as fl
from zoo.fluxion.layers.weighted import Device, DType

AdapterKind = Literal["full", "full_xl", "light"]
KINDS: tuple[AdapterKind, ...] = ("full", "full_xl", "light")
LIGHT_NARROWING = 4  # a light block works at a quarter of its output channels

# -- config -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BlockSpec:
    """One block: its input and output channels and whether it halves the resolution first."""

    in_channels: int
    out_channels: int
    downsample: bool


@dataclass(frozen=True)
class T2IAdapterConfig:
    """Architecture of a T2I-Adapter; defaults are the SD 1.4 full adapters' (3-channel condition).

    Attributes:
        in_channels: Channels of the condition image (1 for sketch and canny maps, 3 otherwise).
        channels: Channels of the blocks' outputs (light: of every block but the last, which repeats
            the last value).
        num_res_blocks: Residual blocks per block.
        downscale_factor: Pixel unshuffle factor: the first feature is this much smaller than the image.
        kind: `full`, `full_xl` or `light` (see the module docstring).
    """

    in_channels: int = 3
    channels: tuple[int, ...] = (320, 640, 1280, 1280)
    num_res_blocks: int = 2
    downscale_factor: int = 8
    kind: AdapterKind = "full"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind {self.kind!r} is not one of {KINDS}")
        if not self.channels or self.num_res_blocks < 1 or self.downscale_factor < 1:
            raise ValueError("channels, num_res_blocks and downscale_factor must be positive")
        if self.kind == "light" and any(c % LIGHT_NARROWING for c in self.channels):
            raise ValueError(f"light adapters need channels divisible by {LIGHT_NARROWING}: {self.channels}")

    @classmethod
    def sd15_full(cls, in_channels: int = 3) -> T2IAdapterConfig:
        """TencentARC's SD 1.4/1.5 full adapters (`in_channels=1` for sketch and canny)."""
        return cls(in_channels=in_channels)

    @classmethod
    def sd15_light(cls) -> T2IAdapterConfig:
        """TencentARC's SD 1.4/1.5 light adapter (color)."""
        return cls(channels=(320, 640, 1280), num_res_blocks=4, kind="light")

    @classmethod
    def sdxl(cls) -> T2IAdapterConfig:
        """TencentARC's SDXL adapters (`t2i-adapter-*-sdxl-1.0`)."""
        return cls(downscale_factor=16, kind="full_xl")

    @classmethod
    def tiny_full(cls) -> T2IAdapterConfig:
        return cls(channels=(32, 64), num_res_blocks=1)

    @classmethod
    def tiny_light(cls) -> T2IAdapterConfig:
        return cls(channels=(32,), num_res_blocks=1, kind="light")

    @property
    def image_channels(self) -> int:
        """Channels after the pixel unshuffle."""
        return self.in_channels * self.downscale_factor**2

    @property
    def pixels_per_latent(self) -> int:
        """How much larger the condition image is than the UNet's latents, per side (the first feature
        is at the latents' size; SDXL's at half of it, its first level's output)."""
        return self.downscale_factor // 2 if self.kind == "full_xl" else self.downscale_factor

    @property
    def blocks(self) -> tuple[BlockSpec, ...]:
        """The blocks, in order; each gives one feature."""
        c = self.channels
        if self.kind == "full":
            return (
                BlockSpec(c[0], c[0], False),
                *(BlockSpec(c[i - 1], c[i], True) for i in range(1, len(c))),
            )
        if self.kind == "full_xl":
            return tuple(_xl_block(c, i) for i in range(len(c)))
        return (
            BlockSpec(self.image_channels, c[0], False),
            *(BlockSpec(c[i], c[i + 1], True) for i in range(len(c) - 1)),
            BlockSpec(c[-1], c[-1], True),
        )


def _xl_block(channels: tuple[int, ...], index: int) -> BlockSpec:
    """SDXL's layout: the second block widens without halving, the third halves, the others keep."""
    if index == 1:
        return BlockSpec(channels[0], channels[1], False)
    if index == 2:
        return BlockSpec(channels[1], channels[2], True)
    return BlockSpec(channels[index], channels[index], False)


# -- building blocks --------------------------------------------------------------------------------


class PixelUnshuffle(fl.ContextModule):
    """(B, C, H, W) → (B, C·f², H/f, W/f): each f×f patch of pixels becomes channels."""

    def __init__(self, factor: int) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_unshuffle(x, self.factor)

    def extra_repr(self) -> str:
        return f"factor={self.factor}"


class HalveResolution(fl.ContextModule):
    """2×2 average pooling, rounding odd sizes up (upstream's `ceil_mode=True`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, kernel_size=2, stride=2, ceil_mode=True)


class ResidualBlock(fl.Residual):
    """A convolution, ReLU and another convolution, added back (1×1 second conv in full adapters)."""

    def __init__(self, channels: int, second_kernel: int, device: Device = None, dtype: DType = None) -> None:
        super().__init__(
            fl.Conv2d(channels, channels, 3, padding=1, device=device, dtype=dtype),
            fl.ReLU(),
            fl.Conv2d(
                channels, channels, second_kernel, padding=second_kernel // 2, device=device, dtype=dtype
            ),
        )


class FullBlock(fl.Chain):
    """Optional halving, a 1×1 convolution when the channels change, then residual blocks."""

    def __init__(self, spec: BlockSpec, res_blocks: int, device: Device = None, dtype: DType = None) -> None:
        layers: list[torch.nn.Module] = [HalveResolution()] if spec.downsample else []
        if spec.in_channels != spec.out_channels:
            layers.append(fl.Conv2d(spec.in_channels, spec.out_channels, 1, device=device, dtype=dtype))
        layers += [ResidualBlock(spec.out_channels, 1, device, dtype) for _ in range(res_blocks)]
        super().__init__(*layers)


class LightBlock(fl.Chain):
    """Optional halving, a 1×1 convolution down to a quarter of the output channels, residual blocks
    of two 3×3 convolutions there, and a 1×1 convolution up to the output channels."""

    def __init__(self, spec: BlockSpec, res_blocks: int, device: Device = None, dtype: DType = None) -> None:
        narrow = spec.out_channels // LIGHT_NARROWING
        layers: list[torch.nn.Module] = [HalveResolution()] if spec.downsample else []
        layers.append(fl.Conv2d(spec.in_channels, narrow, 1, device=device, dtype=dtype))
        layers += [ResidualBlock(narrow, 3, device, dtype) for _ in range(res_blocks)]
        layers.append(fl.Conv2d(narrow, spec.out_channels, 1, device=device, dtype=dtype))
        super().__init__(*layers)


class Features(fl.Chain):
    """Runs its blocks in sequence and returns every block's output (a tuple)."""

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x, outputs = args[0], []
        for name, block in self.named_children():
            x = self.call_child(name, block, x)
            outputs.append(x)
        return tuple(outputs)


# -- the model --------------------------------------------------------------------------------------


class T2IAdapter(fl.Chain):
    """A condition image (B, C, H, W) in, one feature per block out."""

    def __init__(
        self, config: T2IAdapterConfig | None = None, device: Device = None, dtype: DType = None
    ) -> None:
        self.config = config or T2IAdapterConfig()
        c = self.config
        layers: list[torch.nn.Module] = [PixelUnshuffle(c.downscale_factor)]
        if c.kind == "light":
            blocks = [LightBlock(spec, c.num_res_blocks, device, dtype) for spec in c.blocks]
        else:
            layers.append(
                fl.Conv2d(c.image_channels, c.channels[0], 3, padding=1, device=device, dtype=dtype)
            )
            blocks = [FullBlock(spec, c.num_res_blocks, device, dtype) for spec in c.blocks]
        super().__init__(*layers, Features(*blocks))


__all__ = [
    "KINDS",
    "AdapterKind",
    "BlockSpec",
    "Features",
    "FullBlock",
    "HalveResolution",
    "LightBlock",
    "PixelUnshuffle",
    "ResidualBlock",
    "T2IAdapter",
    "T2IAdapterConfig",
]

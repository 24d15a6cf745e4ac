"""ControlNet: a trainable copy of a UNet's down path that turns a condition image into residuals.

Paper: Zhang, Rao & Agrawala, "Adding Conditional Control to Text-to-Image Diffusion Models" (ICCV
2023), https://arxiv.org/abs/2302.05543. Upstream: https://github.com/lllyasviel/ControlNet (original,
`cldm/cldm.py`) and the diffusers `ControlNetModel` (`diffusers/models/controlnets/controlnet.py`),
whose execution order this model follows so that weights convert by key tracing.
Weights: lllyasviel's SD 1.5 ControlNets under the CreativeML OpenRAIL-M licence; the diffusers SDXL
ControlNets under the CreativeML Open RAIL++-M licence.

How it runs: the condition image (pixels in [0, 1], 8× the latents' size) goes through a small
convolutional encoder and is added to the input convolution's output; then the UNet's down path and
middle block run as in the UNet (same building blocks, same conditioning). Every output the UNet
would keep as a skip, and the middle block's output, goes through its own zero-initialised 1×1
convolution: these are the residuals an adapter adds to the UNet (`zoo.foundationals.controlnet.adapter`).

The ControlNet is a model of its own (its own contexts): the adapter runs it inside the UNet's forward
without sharing the UNet's skips or timestep embedding.

Example:
    >>> import torch
    >>> config = ControlNetConfig.tiny_sd15()
    >>> net = ControlNet(config)
    >>> text = torch.zeros(1, 7, config.unet.cross_attention_dim)
    >>> residuals = net.residuals(torch.zeros(1, 4, 16, 16), torch.zeros(1, 3, 128, 128), 999, text)
    >>> len(residuals), residuals[-1].shape
    (5, torch.Size([1, 64, 8, 8]))
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import torch

import zoo.fluxion as fl
from zoo.fluxion.layers.weighted import Device, DType
from zoo.foundationals.latent_diffusion.unet import (
    CONTEXT,
    DownBlocks,
    MiddleBlock,
    Timestep,
    TimestepEncoder,
    UNetConfig,
    skip_key,
)

CONDITION_CONTEXT = "control"
"""Name of the ControlNet's own context holding the condition image."""

# -- config -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ControlNetConfig:
    """Architecture of a ControlNet; defaults are lllyasviel's SD 1.5 ControlNets (v1.1).

    Attributes:
        unet: The UNet whose down path and middle block the ControlNet copies (its up path and output
            fields are unused).
        conditioning_channels: Channels of the condition image (3 for RGB).
        embedding_channels: Channels of the condition encoder's steps; every step after the first
            halves the resolution (upstream's `conditioning_embedding_out_channels`).
        global_pool_conditions: Whether the residuals are averaged over the image (the shuffle models).
    """

    unet: UNetConfig = field(default_factory=UNetConfig.sd15)
    conditioning_channels: int = 3
    embedding_channels: tuple[int, ...] = (16, 32, 96, 256)
    global_pool_conditions: bool = False

    def __post_init__(self) -> None:
        if not self.embedding_channels:
            raise ValueError("embedding_channels is empty: the condition encoder needs one step")
        if self.conditioning_channels < 1:
            raise ValueError(f"conditioning_channels is {self.conditioning_channels}: at least 1 is needed")

    @classmethod
    def sd15(cls) -> ControlNetConfig:
        """A ControlNet for Stable Diffusion 1.5 (361 M parameters)."""
        return cls()

    @classmethod
    def sdxl(cls) -> ControlNetConfig:
        """A full ControlNet for SDXL base 1.0 (diffusers/controlnet-canny-sdxl-1.0, 1.25 B parameters)."""
        return cls(unet=UNetConfig.sdxl())

    @classmethod
    def tiny_sd15(cls) -> ControlNetConfig:
        """SD 1.5's flavour for tests."""
        return cls(unet=UNetConfig.tiny_sd15(), embedding_channels=(8, 8, 16, 16))

    @classmethod
    def tiny_sdxl(cls) -> ControlNetConfig:
        """SDXL's flavour for tests."""
        return cls(unet=UNetConfig.tiny_sdxl(), embedding_channels=(8, 8, 16, 16))

    @property
    def downscale_factor(self) -> int:
        """How much smaller the latents are than the condition image, per side."""
        return 2 ** (len(self.embedding_channels) - 1)


# -- building blocks --------------------------------------------------------------------------------


class ConditionEncoder(fl.Chain):
    """The condition image (from the context) to the first level's channels at the latents' size.

    A 3×3 convolution, then per further step a 3×3 convolution and a strided one, each followed by a
    SiLU, and a last (zero-initialised upstream) 3×3 convolution.
    """

    def __init__(self, config: ControlNetConfig, device: Device = None, dtype: DType = None) -> None:
        channels = config.embedding_channels

        def conv(c_in: int, c_out: int, stride: int = 1) -> fl.Conv2d:
            return fl.Conv2d(c_in, c_out, 3, stride=stride, padding=1, device=device, dtype=dtype)

        layers: list[torch.nn.Module] = [
            fl.UseContext(CONDITION_CONTEXT, "condition"),
            conv(config.conditioning_channels, channels[0]),
            fl.SiLU(),
        ]
        for c_in, c_out in itertools.pairwise(channels):
            layers += [conv(c_in, c_in), fl.SiLU(), conv(c_in, c_out, stride=2), fl.SiLU()]
        layers.append(conv(channels[-1], config.unet.block_channels[0]))
        super().__init__(*layers)


class ConditionedDownBlocks(DownBlocks):
    """The UNet's down path, with the encoded condition added to the input convolution's output."""

    def __init__(self, config: ControlNetConfig, device: Device = None, dtype: DType = None) -> None:
        super().__init__(config.unet, device, dtype)
        first = self[0]
        assert isinstance(first, fl.Chain)
        conv_in = first.pop(0)
        first.insert(0, fl.Sum(conv_in, ConditionEncoder(config, device, dtype)))


class ZeroConvolutions(fl.Parallel):
    """One 1×1 convolution per stored skip (read from the context), and one on the middle block's output."""

    def __init__(self, skip_channels: list[int], middle_channels: int, device: Device, dtype: DType) -> None:
        def conv(channels: int) -> fl.Conv2d:
            return fl.Conv2d(channels, channels, 1, device=device, dtype=dtype)

        skips = [
            fl.Chain(fl.UseContext(CONTEXT, skip_key(index)), conv(channels))
            for index, channels in enumerate(skip_channels)
        ]
        super().__init__(*skips, conv(middle_channels))


# -- the model --------------------------------------------------------------------------------------


class ControlNet(fl.Chain):
    """Latents, a condition image, a timestep and text in; one residual per UNet skip, and one for the
    middle block, out (a tuple, the middle block's last)."""

    def __init__(
        self, config: ControlNetConfig | None = None, device: Device = None, dtype: DType = None
    ) -> None:
        self.config = config or ControlNetConfig()
        down = ConditionedDownBlocks(self.config, device, dtype)
        unet = self.config.unet
        super().__init__(
            TimestepEncoder(unet, device, dtype),
            down,
            MiddleBlock(unet, device, dtype),
            ZeroConvolutions(down.skip_channels, unet.block_channels[-1], device, dtype),
        )

    def residuals(
        self,
        latents: torch.Tensor,
        condition: torch.Tensor,
        timestep: Timestep,
        text_embedding: torch.Tensor,
        pooled: torch.Tensor | None = None,
        time_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """Run on `latents` (B, C, H, W) with the condition image (B, C', 8H, 8W) in [0, 1].

        Args:
            latents: The noisy latents the UNet is about to denoise.
            condition: The condition image (an edge map, a depth map, a pose...).
            timestep: The timestep.
            text_embedding: The text embedding for cross-attention.
            pooled: SDXL's pooled text embedding.
            time_ids: SDXL's size and crop ids.

        Returns:
            The residuals, unscaled: one per UNet skip (`skip_0`, ...), then the middle block's.
        """
        values: dict[str, object] = {"timestep": timestep, "clip_text_embedding": text_embedding}
        if pooled is not None:
            values["pooled_text_embedding"] = pooled
        if time_ids is not None:
            values["time_ids"] = time_ids
        self.set_context(CONTEXT, values)
        self.set_context(CONDITION_CONTEXT, {"condition": condition})
        return self(latents)


__all__ = [
    "CONDITION_CONTEXT",
    "ConditionEncoder",
    "ConditionedDownBlocks",
    "ControlNet",
    "ControlNetConfig",
    "ZeroConvolutions",
]

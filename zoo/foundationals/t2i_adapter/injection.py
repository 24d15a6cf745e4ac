"""A T2I-Adapter in our UNet: its features added inside the down path (and after the middle block).

Feature k goes to level k of the down path, where diffusers adds `down_intrablock_additional_residuals`:
at a level with cross-attention, after its last spatial transformer (before its downsampler); at a
level without, after its downsampler (after its last resnet at the last level). It changes the down
path and the skip stored there alike. A feature left after the levels goes after the middle block
when its shape matches (SDXL's adapters), as diffusers does.

`T2IAdapterInjection(unet, adapter, name, scale).inject()`, then `set_condition(image)` computes the
features once (they do not depend on the step); every UNet call adds `scale` times them. `end` is the
fraction of a generation's first steps that use them (diffusers' `adapter_conditioning_factor`).
Several adapters stack, with ControlNets and LoRAs, and eject in any order, bit for bit.

Example:
    >>> import torch
    >>> from zoo.foundationals.latent_diffusion.unet import UNet, UNetConfig
    >>> from zoo.foundationals.t2i_adapter import T2IAdapter, T2IAdapterConfig
    >>> unet = UNet(UNetConfig.tiny_sd15())
    >>> injection = T2IAdapterInjection(unet, T2IAdapter(T2IAdapterConfig.tiny_full()), scale=0.8).inject()
    >>> injection.set_condition(torch.rand(1, 3, 128, 128))
    >>> text = torch.zeros(1, 7, 32)
    >>> unet.denoise(torch.zeros(1, 4, 16, 16), 999, text).shape
    torch.Size([1, 4, 16, 16])
    >>> injection.eject()
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

import zoo.fluxion as fl
from zoo.errors import ConfigError
from zoo.foundationals.latent_diffusion.steps import StepAware
from zoo.foundationals.latent_diffusion.unet import MiddleBlock, UNet, UNetConfig
from zoo.foundationals.latent_diffusion.unet_sites import RunAfter, down_step, occupant_index
from zoo.foundationals.t2i_adapter.t2i_adapter import T2IAdapter


@dataclass
class FeatureState:
    """The features an adapter adds, shared by its layers.

    Attributes:
        scale: Multiplies every feature (diffusers' `adapter_conditioning_scale`).
        end: Fraction of a generation's first steps that use the features.
        features: The adapter's outputs for the condition image; empty until set.
        active: Whether the coming step uses them (always, outside a generation).
    """

    scale: float = 1.0
    end: float = 1.0
    features: tuple[torch.Tensor, ...] = field(default_factory=tuple)
    active: bool = True


class AddFeature(fl.ContextModule, StepAware):
    """Adds `scale` × feature `index` to its input (repeated over the batch); the middle block's only
    when the shapes match."""

    def __init__(self, name: str, index: int, state: FeatureState, only_if_shaped: bool = False) -> None:
        super().__init__()
        self.name, self.index, self.state, self.only_if_shaped = name, index, state, only_if_shaped

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.state.active:
            return x
        if not self.state.features:
            raise ConfigError(f"T2I-Adapter {self.name!r} has no condition image: call set_condition first")
        feature = self.state.features[self.index] * self.state.scale
        if self.only_if_shaped and feature.shape[1:] != x.shape[1:]:
            return x
        return x + feature.to(device=x.device, dtype=x.dtype).expand(x.shape[0], -1, -1, -1)

    def set_step(self, index: int | None, steps: int) -> None:
        # diffusers: features for the steps i < int(steps * adapter_conditioning_factor)
        self.state.active = index is None or index < int(steps * self.state.end)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, index={self.index}"


def feature_sites(config: UNetConfig) -> list[tuple[int, int]]:
    """(down step, position in it) of the block after which each level's feature is added."""
    per_level = config.layers_per_block + 1  # layer steps, then a downsampler step
    last_level = len(config.block_channels) - 1
    sites = []
    for level, cross in enumerate(config.cross_attention_levels):
        last_layer = 1 + level * per_level + config.layers_per_block - 1
        if cross:
            sites.append((last_layer, 1))  # after the spatial transformer (the resnet is first)
        elif level != last_level:
            sites.append((last_layer + 1, 0))  # after the downsampler
        else:
            sites.append((last_layer, 0))  # after the resnet
    return sites


class T2IAdapterInjection:
    """One T2I-Adapter attached to one UNet.

    Args:
        unet: The UNet to condition.
        adapter: A T2I-Adapter whose features fit that UNet's levels.
        name: Tells several adapters apart.
        scale: Multiplies the features.
        end: Fraction of a generation's first steps that use the features.
    """

    def __init__(
        self, unet: UNet, adapter: T2IAdapter, name: str = "t2i", scale: float = 1.0, end: float = 1.0
    ) -> None:
        if len(adapter.config.blocks) < len(unet.config.block_channels):
            raise ConfigError(
                f"T2I-Adapter {name!r} makes {len(adapter.config.blocks)} features, the UNet has "
                f"{len(unet.config.block_channels)} levels",
                hint="use an adapter made for this base (SD 1.x adapters for SD 1.5, SDXL ones for SDXL)",
            )
        self.unet, self.adapter, self.name = unet, adapter, name
        self.state = FeatureState(scale, end)
        self._adapters: list[fl.Adapter[nn.Module]] = []

    @property
    def scale(self) -> float:
        return self.state.scale

    @scale.setter
    def scale(self, value: float) -> None:
        self.state.scale = value

    def set_condition(self, image: torch.Tensor) -> None:
        """Compute the features of the condition image (1, C, H, W) in [0, 1], 8× the latents' size."""
        expected = self.adapter.config.in_channels
        if image.ndim != 4 or image.shape[1] != expected:
            raise ConfigError(
                f"T2I-Adapter {self.name!r} takes (B, {expected}, H, W) images, got {tuple(image.shape)}"
            )
        self.state.features = tuple(
            self.adapter(image.to(device=self.adapter.device, dtype=self.adapter.dtype))
        )
        self._check_shapes()

    def _check_shapes(self) -> None:
        for level, (channels, feature) in enumerate(
            zip(self.unet.config.block_channels, self.state.features, strict=False)
        ):
            if feature.shape[1] != channels:
                raise ConfigError(
                    f"T2I-Adapter {self.name!r}: feature {level} has {feature.shape[1]} channels, the UNet's "
                    f"level {level} has {channels}",
                    hint="use an adapter made for this base",
                )

    def inject(self) -> T2IAdapterInjection:
        """Put the adapter's layers into the UNet; returns self."""
        if self._adapters:
            raise RuntimeError(f"T2I-Adapter {self.name!r} is already injected; eject it first")
        for level, (step_index, position) in enumerate(feature_sites(self.unet.config)):
            step = down_step(self.unet, step_index)
            layer = AddFeature(self.name, level, self.state)
            self._adapters.append(RunAfter(step[position], layer).inject(step))
        levels = len(self.unet.config.block_channels)
        if len(self.adapter.config.blocks) > levels:
            middle = self.unet[occupant_index(self.unet, MiddleBlock)]
            layer = AddFeature(self.name, levels, self.state, only_if_shaped=True)
            self._adapters.append(RunAfter(middle, layer).inject(self.unet))
        return self

    def eject(self) -> None:
        """Take the adapter's layers out; the UNet is as it was before `inject`."""
        if not self._adapters:
            raise RuntimeError(f"T2I-Adapter {self.name!r} is not injected")
        for adapter in reversed(self._adapters):
            adapter.eject()
        self._adapters = []


__all__ = ["AddFeature", "FeatureState", "T2IAdapterInjection", "feature_sites"]

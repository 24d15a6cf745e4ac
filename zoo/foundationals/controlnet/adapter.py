"""A ControlNet in our UNet: its residuals added to the down path's skips and the middle block's output.

`ControlNetAdapter(unet, controlnet, name).inject()` wraps three kinds of place in the UNet:

- the timestep encoder, followed by a `RunControlNet` layer: it runs the ControlNet on the UNet's
  input and conditioning (read from the UNet's context) and stores the scaled residuals in that
  context, under the adapter's name;
- each step of the down path, followed by an `AddToSkip` layer: it adds residual i to `skip_i` (the
  skip only, as diffusers does: the down path itself runs on unchanged);
- the up path, preceded by an `AddResidual` layer: it adds the last residual to the middle block's output.

Several ControlNets inject side by side (each under its own name) and eject in any order, with or
without LoRAs and T2I-Adapters in; ejecting restores the UNet bit for bit. The conditioning scale
multiplies the residuals; `start` and `end` (fractions of the steps, diffusers' `control_guidance_start`
/ `_end`) restrict a generation's steps on which the ControlNet acts.

Example:
    >>> import torch
    >>> from zoo.foundationals.controlnet import ControlNet, ControlNetConfig
    >>> from zoo.foundationals.latent_diffusion.unet import UNet
    >>> config = ControlNetConfig.tiny_sd15()
    >>> unet, controlnet = UNet(config.unet), ControlNet(config)
    >>> adapter = ControlNetAdapter(unet, controlnet, "edges", scale=0.5).inject()
    >>> adapter.set_condition(torch.rand(1, 3, 128, 128))
    >>> text = torch.zeros(1, 7, config.unet.cross_attention_dim)
    >>> unet.denoise(torch.zeros(1, 4, 16, 16), 999, text).shape
    torch.Size([1, 4, 16, 16])
    >>> adapter.eject()
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

import zoo.fluxion as fl
from zoo.errors import ConfigError
from zoo.foundationals.controlnet.controlnet import ControlNet
from zoo.foundationals.latent_diffusion.steps import StepAware
from zoo.foundationals.latent_diffusion.unet import CONTEXT, TimestepEncoder, UNet, UpBlocks, skip_key
from zoo.foundationals.latent_diffusion.unet_sites import (
    RunAfter,
    RunBefore,
    down_blocks,
    occupant_index,
)

_RESIDUALS = "control_residuals:"  # context key prefix; the adapter's name follows


def residuals_key(name: str) -> str:
    """The UNet context key holding the residuals of the ControlNet injected as `name`."""
    return _RESIDUALS + name


@dataclass
class ControlState:
    """What a ControlNet adds, shared by its layers: settable at any time.

    Attributes:
        scale: Multiplies every residual (diffusers' `controlnet_conditioning_scale`).
        start: Fraction of a generation's steps before which it does not act.
        end: Fraction of the steps after which it does not act.
        condition: The condition image (1 or B, C, H, W) in [0, 1]; None until set.
        active: Whether the coming step is in [start, end] (always, outside a generation).
    """

    scale: float = 1.0
    start: float = 0.0
    end: float = 1.0
    condition: torch.Tensor | None = None
    active: bool = True


class RunControlNet(fl.ContextModule, StepAware):
    """Runs the ControlNet on the UNet's input and stores its scaled residuals in the UNet's context."""

    def __init__(self, controlnet: ControlNet, name: str, state: ControlState) -> None:
        super().__init__()
        # A submodule of this layer, not a chain child: the ControlNet keeps its own contexts (its
        # skips and timestep embedding must not overwrite the UNet's).
        self.controlnet = controlnet
        self.name, self.state = name, state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.state.active:
            return x
        condition = self.state.condition
        if condition is None:
            raise ConfigError(f"ControlNet {self.name!r} has no condition image: call set_condition first")
        values = self.use_context(CONTEXT)
        condition = condition.to(device=x.device, dtype=x.dtype).expand(x.shape[0], -1, -1, -1)
        outputs = self.controlnet.residuals(
            x,
            condition,
            values["timestep"],
            values["clip_text_embedding"],
            values.get("pooled_text_embedding"),
            values.get("time_ids"),
        )
        scaled = [residual * self.state.scale for residual in outputs]
        if self.controlnet.config.global_pool_conditions:
            scaled = [torch.mean(residual, dim=(2, 3), keepdim=True) for residual in scaled]
        values[residuals_key(self.name)] = scaled
        return x

    def set_step(self, index: int | None, steps: int) -> None:
        # diffusers' `controlnet_keep`: off when the step starts before `start` or ends after `end`.
        if index is None:
            self.state.active = True
            return
        early = index / steps < self.state.start
        late = (index + 1) / steps > self.state.end
        self.state.active = not (early or late)

    def extra_repr(self) -> str:
        return f"name={self.name!r}"


class AddToSkip(fl.ContextModule):
    """Adds residual `index` of a ControlNet to the skip the down step just stored; passes its input on."""

    def __init__(self, name: str, index: int) -> None:
        super().__init__()
        self.name, self.index = name, index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = self.use_context(CONTEXT)
        residuals = values.get(residuals_key(self.name))
        if residuals is not None:
            key = skip_key(self.index)
            values[key] = values[key] + residuals[self.index]
        return x

    def extra_repr(self) -> str:
        return f"name={self.name!r}, index={self.index}"


class AddResidual(fl.ContextModule):
    """Adds a ControlNet's last residual (the middle block's) to its input."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residuals = self.use_context(CONTEXT).get(residuals_key(self.name))
        return x if residuals is None else x + residuals[-1]

    def extra_repr(self) -> str:
        return f"name={self.name!r}"


class ControlNetAdapter:
    """One ControlNet attached to one UNet: build, `inject()`, `set_condition(image)`, run, `eject()`.

    Args:
        unet: The UNet to control.
        controlnet: A ControlNet made for that UNet's architecture.
        name: Tells several ControlNets in one UNet apart.
        scale: Multiplies the residuals.
        start: Fraction of a generation's steps before which the ControlNet does not act.
        end: Fraction of the steps after which it does not act.
    """

    def __init__(
        self,
        unet: UNet,
        controlnet: ControlNet,
        name: str = "control",
        scale: float = 1.0,
        start: float = 0.0,
        end: float = 1.0,
    ) -> None:
        _check_fits(unet, controlnet)
        if not 0 <= start <= end <= 1:
            raise ConfigError(f"ControlNet {name!r}: need 0 <= start <= end <= 1, got {start} and {end}")
        self.unet, self.controlnet, self.name = unet, controlnet, name
        self.state = ControlState(scale, start, end)
        self._adapters: list[fl.Adapter[nn.Module]] = []

    @property
    def scale(self) -> float:
        return self.state.scale

    @scale.setter
    def scale(self, value: float) -> None:
        self.state.scale = value

    @property
    def is_injected(self) -> bool:
        return bool(self._adapters)

    def set_condition(self, image: torch.Tensor) -> None:
        """The condition image (1 or B, C, H, W) in [0, 1], 8× the latents' size (an edge map, a pose...)."""
        expected = self.controlnet.config.conditioning_channels
        if image.ndim != 4 or image.shape[1] != expected:
            raise ConfigError(
                f"ControlNet {self.name!r} takes (B, {expected}, H, W) condition images, got {tuple(image.shape)}"
            )
        self.state.condition = image

    def inject(self) -> ControlNetAdapter:
        """Put the ControlNet's layers into the UNet; returns self."""
        if self.is_injected:
            raise RuntimeError(f"ControlNet {self.name!r} is already injected; eject it first")
        if _injected_names(self.unet) & {self.name}:
            raise ConfigError(f"a ControlNet named {self.name!r} is already in this UNet: pick another name")
        unet, down = self.unet, down_blocks(self.unet)
        runner = RunAfter(
            unet[occupant_index(unet, TimestepEncoder)], RunControlNet(self.controlnet, self.name, self.state)
        )
        self._adapters = [runner.inject(unet)]
        for index, step in enumerate(list(down)):
            self._adapters.append(RunAfter(step, AddToSkip(self.name, index)).inject(down))
        middle = RunBefore(unet[occupant_index(unet, UpBlocks)], AddResidual(self.name))
        self._adapters.append(middle.inject(unet))
        return self

    def eject(self) -> None:
        """Take the ControlNet's layers out; the UNet is as it was before `inject`."""
        if not self.is_injected:
            raise RuntimeError(f"ControlNet {self.name!r} is not injected")
        for adapter in reversed(self._adapters):
            adapter.eject()
        self._adapters = []


def _injected_names(unet: UNet) -> set[str]:
    return {layer.name for layer in unet.modules() if isinstance(layer, RunControlNet)}


def _check_fits(unet: UNet, controlnet: ControlNet) -> None:
    """The ControlNet's down path must produce the UNet's skips: same levels, channels and conditioning."""
    ours, theirs = unet.config, controlnet.config.unet
    for field in (
        "block_channels",
        "layers_per_block",
        "cross_attention_dim",
        "addition_embed_type",
        "in_channels",
    ):
        if getattr(ours, field) != getattr(theirs, field):
            raise ConfigError(
                f"this ControlNet does not fit this UNet: {field} is {getattr(theirs, field)!r}, "
                f"the UNet's is {getattr(ours, field)!r}",
                hint="use a ControlNet made for this base (SD 1.5 ControlNets for SD 1.5, SDXL ones for SDXL)",
            )


__all__ = ["AddResidual", "AddToSkip", "ControlNetAdapter", "ControlState", "RunControlNet", "residuals_key"]

"""Layers that depend on the solver step: told the step before each UNet call of a generation.

ControlNet's guidance range (`start`, `end`) and T2I-Adapter's conditioning factor act on some steps
only. Such a layer subclasses `StepAware`; the generation loop calls `announce_step` on the UNet before
each step and `announce_step(unet, None, steps)` after the last one, so that outside a generation the
layers act on every call.
"""

from __future__ import annotations

from torch import nn


class StepAware:
    """Mixin for a layer of a model run step by step."""

    def set_step(self, index: int | None, steps: int) -> None:
        """Step `index` (0-based) of `steps` comes next; None: no generation is running."""
        raise NotImplementedError


def announce_step(model: nn.Module, index: int | None, steps: int) -> None:
    """Tell every `StepAware` layer of `model` which step comes next."""
    for module in model.modules():
        if isinstance(module, StepAware):
            module.set_step(index, steps)


__all__ = ["StepAware", "announce_step"]

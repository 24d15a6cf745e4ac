"""Where adapters of the UNet's down path attach, whatever adapters are already in.

Structural adapters (ControlNet residuals, T2I-Adapter features) wrap whole parts of the UNet: a step
of the down path, a block inside one, the middle block, the up path. Another adapter may already wrap
that place; the new one then wraps the adapter that is there (its *occupant*), so that both stay, and
either can be ejected first. `RunAfter` and `RunBefore` are the two wrappers they use: the target, then
a layer; or a layer, then the target.
"""

from __future__ import annotations

from typing import TypeVar, cast

from torch import nn

import zoo.fluxion as fl
from zoo.foundationals.latent_diffusion.unet import DownBlocks, UNet

T = TypeVar("T", bound=nn.Module)


def unwrap(module: nn.Module) -> nn.Module:
    """The module an adapter (or a stack of them) wraps; the module itself when none does."""
    while isinstance(module, fl.Adapter):
        module = cast(fl.Adapter[nn.Module], module).target
    return module


def occupant_index(chain: fl.Chain, kind: type[nn.Module]) -> int:
    """Position of the child of `chain` that is (or wraps) a `kind`."""
    for index, child in enumerate(chain):
        if isinstance(unwrap(child), kind):
            return index
    raise ValueError(f"{type(chain).__name__} holds no {kind.__name__}")


def down_blocks(unet: UNet) -> DownBlocks:
    """The UNet's down path, adapters or not."""
    found = unwrap(unet[occupant_index(unet, DownBlocks)])
    assert isinstance(found, DownBlocks)
    return found


def down_step(unet: UNet, index: int) -> fl.Chain:
    """Step `index` of the down path (the chain that stores `skip_<index>`), unwrapped."""
    step = unwrap(down_blocks(unet)[index])
    assert isinstance(step, fl.Chain)
    return step


class RunAfter(fl.Chain, fl.Adapter[nn.Module]):
    """Runs its target, then `layer` on the target's output."""

    def __init__(self, target: nn.Module, layer: nn.Module) -> None:
        with self.setup_adapter(target):
            super().__init__(target, layer)


class RunBefore(fl.Chain, fl.Adapter[nn.Module]):
    """Runs `layer`, then its target on the layer's output."""

    def __init__(self, target: nn.Module, layer: nn.Module) -> None:
        with self.setup_adapter(target):
            super().__init__(layer, target)


__all__ = ["RunAfter", "RunBefore", "down_blocks", "down_step", "occupant_index", "unwrap"]

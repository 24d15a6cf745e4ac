"""Chains that combine their children's inputs and outputs otherwise than one after the other.

Each is a `Chain` (same naming of children, same keys); only `forward` differs.
"""

from __future__ import annotations

import functools
import operator
from typing import Any

import torch
from torch import nn

from zoo.fluxion.chain import Chain


class Sum(Chain):
    """Runs every child on the same inputs and adds their outputs.

    Example:
        >>> import torch, zoo.fluxion as fl
        >>> fl.Sum(fl.Identity(), fl.Multiply(2.0))(torch.ones(2)).tolist()
        [3.0, 3.0]
    """

    def forward(self, *args: Any) -> Any:
        return functools.reduce(operator.add, self._outputs(*args))


class Residual(Chain):
    """A chain whose output is added to its first input.

    Example:
        >>> import torch, zoo.fluxion as fl
        >>> fl.Residual(fl.Multiply(2.0))(torch.ones(2)).tolist()
        [3.0, 3.0]
    """

    def forward(self, *args: Any) -> Any:
        return args[0] + super().forward(*args)


class Passthrough(Chain):
    """Runs its children for their side effects (e.g. `SetContext`) and returns its inputs.

    Example:
        >>> import torch, zoo.fluxion as fl
        >>> fl.Passthrough(fl.Multiply(2.0))(torch.ones(2)).tolist()
        [1.0, 1.0]
    """

    def forward(self, *args: Any) -> Any:
        super().forward(*args)
        return args[0] if len(args) == 1 else args


class Parallel(Chain):
    """Runs every child on the same inputs; returns their outputs as a tuple.

    Example:
        >>> import torch, zoo.fluxion as fl
        >>> [t.tolist() for t in fl.Parallel(fl.Identity(), fl.Multiply(3.0))(torch.ones(1))]
        [[1.0], [3.0]]
    """

    def forward(self, *args: Any) -> Any:
        return tuple(self._outputs(*args))


class Distribute(Chain):
    """Gives the i-th input to the i-th child; returns their outputs as a tuple.

    Example:
        >>> import torch, zoo.fluxion as fl
        >>> [t.tolist() for t in fl.Distribute(fl.Multiply(2.0), fl.Multiply(3.0))(torch.ones(1), torch.ones(1))]
        [[2.0], [3.0]]
    """

    def forward(self, *args: Any) -> Any:
        if len(args) != len(self):
            raise ValueError(f"Distribute has {len(self)} children but got {len(args)} inputs")
        return tuple(
            self.call_child(name, child, arg)
            for (name, child), arg in zip(self.named_children(), args, strict=True)
        )


class Concatenate(Chain):
    """Runs every child on the same inputs and concatenates their outputs along `dim`.

    Example:
        >>> import torch, zoo.fluxion as fl
        >>> fl.Concatenate(fl.Identity(), fl.Identity(), dim=1)(torch.ones(2, 3)).shape
        torch.Size([2, 6])
    """

    def __init__(self, *modules: nn.Module, dim: int = 0) -> None:
        super().__init__(*modules)
        self.dim = dim

    def forward(self, *args: Any) -> Any:
        return torch.cat(self._outputs(*args), dim=self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


__all__ = ["Concatenate", "Distribute", "Parallel", "Passthrough", "Residual", "Sum"]

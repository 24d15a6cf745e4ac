"""Activations: parameterless chain leaves."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from zoo.fluxion.module import ContextModule


class SiLU(ContextModule):
    """x * sigmoid(x).

    Example:
        >>> import torch, zoo.fluxion as fl
        >>> fl.SiLU()(torch.zeros(2)).tolist()
        [0.0, 0.0]
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(x)


class GeLU(ContextModule):
    """Gaussian error linear unit; `approximate="tanh"` for the tanh approximation.

    Example:
        >>> import torch, zoo.fluxion as fl
        >>> fl.GeLU()(torch.zeros(2)).tolist()
        [0.0, 0.0]
    """

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        self.approximate = approximate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x, approximate=self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class QuickGeLU(ContextModule):
    """x * sigmoid(1.702 x): the GeLU approximation OpenAI's CLIP was trained with.

    Example:
        >>> import torch, zoo.fluxion as fl
        >>> fl.QuickGeLU()(torch.zeros(2)).tolist()
        [0.0, 0.0]
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class ReLU(ContextModule):
    """max(x, 0).

    Example:
        >>> import torch, zoo.fluxion as fl
        >>> fl.ReLU()(torch.tensor([-1.0, 2.0])).tolist()
        [0.0, 2.0]
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x)


class GLU(ContextModule):
    """Gated unit: splits the last dimension in two halves and returns `x * activation(gate)`.

    Example:
        >>> import torch, zoo.fluxion as fl
        >>> fl.GLU(fl.ReLU())(torch.tensor([[3.0, 2.0]])).tolist()
        [[6.0]]
    """

    def __init__(self, activation: ContextModule) -> None:
        super().__init__()
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = x.chunk(2, dim=-1)
        return value * self.activation(gate)


__all__ = ["GLU", "GeLU", "QuickGeLU", "ReLU", "SiLU"]

"""LoHa: a weight change made of two low-rank products multiplied element by element (LyCORIS, FedPara).

    dW = (w1_a @ w1_b) * (w2_a @ w2_b)                  w1_a (out, rank), w1_b (rank, in·kh·kw)

With Tucker cores (`t1`, `t2`, for convolutions) each product goes through its core instead:

    dW = (t1 ×₁ w1_a ×₂ w1_b) * (t2 ×₁ w2_a ×₂ w2_b)    t (rank, rank, kh, kw), w_a (rank, out), w_b (rank, in)

as LyCORIS and peft build it. Rebuilt at every call, then run through the layer's own operation.
"""

from __future__ import annotations

import torch

from zoo.fluxion.adapters.delta import LayerOp, WeightDelta, as_parameter, check_factors
from zoo.fluxion.errors import LoraWeightsError


class Loha(WeightDelta):
    """A LoHa update of one layer (Linear or Conv2d), from its factors.

    Example:
        >>> import torch, zoo.fluxion as fl
        >>> layer = fl.Linear(8, 4)
        >>> factors = [torch.randn(4, 2), torch.randn(2, 8), torch.randn(4, 2), torch.randn(2, 8)]
        >>> loha = fl.Loha("style", fl.LayerOp.of(layer), *factors)
        >>> loha(torch.randn(3, 8)).shape
        torch.Size([3, 4])
    """

    def __init__(
        self,
        name: str,
        op: LayerOp,
        w1_a: torch.Tensor,
        w1_b: torch.Tensor,
        w2_a: torch.Tensor,
        w2_b: torch.Tensor,
        t1: torch.Tensor | None = None,
        t2: torch.Tensor | None = None,
        scale: float = 1.0,
    ) -> None:
        super().__init__(name, op, scale)
        self.w1_a, self.w1_b = as_parameter(w1_a), as_parameter(w1_b)
        self.w2_a, self.w2_b = as_parameter(w2_a), as_parameter(w2_b)
        if (t1 is None) != (t2 is None):
            raise LoraWeightsError(f"LoHa {name!r}: give both Tucker cores t1 and t2, or neither")
        self.t1 = None if t1 is None else as_parameter(t1)
        self.t2 = None if t2 is None else as_parameter(t2)
        check_factors(self)

    @property
    def rank(self) -> int:
        return self.w1_b.shape[0]

    def unscaled_weight(self) -> torch.Tensor:
        if self.t1 is None or self.t2 is None:
            return _product(self.w1_a, self.w1_b) * _product(self.w2_a, self.w2_b)
        return _tucker(self.t1, self.w1_a, self.w1_b) * _tucker(self.t2, self.w2_a, self.w2_b)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, rank={self.rank}, tucker={self.t1 is not None}"


def _product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a @ b.flatten(1)


def _tucker(core: torch.Tensor, w_a: torch.Tensor, w_b: torch.Tensor) -> torch.Tensor:
    """(out, in, kh, kw) from a core (rank, rank, kh, kw), w_a (rank, out) and w_b (rank, in)."""
    return torch.einsum("ij...,jr,ip->pr...", core, w_b, w_a)


__all__ = ["Loha"]

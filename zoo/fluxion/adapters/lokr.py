"""LoKr: a weight change that is the Kronecker product of two small matrices (LyCORIS).

    dW = kron(w1, w2)          w1 (a, c), w2 (b, d) or (b, d, kh, kw): dW is (a·b, c·d[, kh, kw])

Either factor may itself be low-rank (`w1_a @ w1_b`, `w2_a @ w2_b`), and the second may have a Tucker
core for convolutions (`t2` (rank, rank, kh, kw) with `w2_a` (rank, b), `w2_b` (rank, d)), as LyCORIS
and peft store them. A flattened second factor (b, d·kh·kw) gives a change reshaped to the layer's.
"""

from __future__ import annotations

import torch

from zoo.fluxion.adapters.delta import LayerOp, WeightDelta, as_parameter, check_factors
from zoo.fluxion.errors import LoraWeightsError

Factor = torch.Tensor | None


class Lokr(WeightDelta):
    """A LoKr update of one layer (Linear or Conv2d), from its factors (keywords, as files name them).

    Example:
        >>> import torch, zoo.fluxion as fl
        >>> op = fl.LayerOp.of(fl.Linear(8, 6))
        >>> lokr = fl.Lokr("style", op, w1=torch.randn(2, 2), w2_a=torch.randn(3, 1), w2_b=torch.randn(1, 4))
        >>> lokr.delta_weight().shape
        torch.Size([6, 8])
    """

    def __init__(
        self,
        name: str,
        op: LayerOp,
        *,
        w1: Factor = None,
        w1_a: Factor = None,
        w1_b: Factor = None,
        w2: Factor = None,
        w2_a: Factor = None,
        w2_b: Factor = None,
        t2: Factor = None,
        scale: float = 1.0,
    ) -> None:
        super().__init__(name, op, scale)
        _check_layout(name, (w1, w1_a, w1_b), (w2, w2_a, w2_b), t2)
        self.w1, self.w1_a, self.w1_b = _parameters(w1, w1_a, w1_b)
        self.w2, self.w2_a, self.w2_b = _parameters(w2, w2_a, w2_b)
        (self.t2,) = _parameters(t2)
        check_factors(self)

    @property
    def rank(self) -> int | None:
        """The rank of the low-rank factor; None when both factors are full."""
        low_rank = self.w1_b if self.w1_b is not None else self.w2_b
        return None if low_rank is None else low_rank.shape[0]

    def unscaled_weight(self) -> torch.Tensor:
        first, second = self._first(), self._second().contiguous()  # kron views its operands
        if second.dim() == 4:
            first = first[:, :, None, None]
        return torch.kron(first, second)

    def _first(self) -> torch.Tensor:
        if self.w1 is not None:
            return self.w1
        assert self.w1_a is not None and self.w1_b is not None
        return self.w1_a @ self.w1_b

    def _second(self) -> torch.Tensor:
        if self.w2 is not None:
            return self.w2
        assert self.w2_a is not None and self.w2_b is not None
        if self.t2 is not None:
            return torch.einsum("ij...,jr,ip->pr...", self.t2, self.w2_b, self.w2_a)
        return self.w2_a @ self.w2_b.flatten(1)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, rank={self.rank}, tucker={self.t2 is not None}"


def _parameters(*tensors: Factor) -> list[torch.nn.Parameter | None]:
    return [None if tensor is None else as_parameter(tensor) for tensor in tensors]


def _check_layout(name: str, first: tuple[Factor, ...], second: tuple[Factor, ...], t2: Factor) -> None:
    """Each factor whole or as a pair, not both; a Tucker core only with the second pair."""
    for which, (whole, a, b) in (("w1", first), ("w2", second)):
        if (whole is None) == (a is None or b is None) or (a is None) != (b is None):
            raise LoraWeightsError(
                f"LoKr {name!r}: give {which}, or {which}_a and {which}_b", hint="one form per factor"
            )
    if t2 is not None and second[0] is not None:
        raise LoraWeightsError(f"LoKr {name!r}: a Tucker core t2 goes with w2_a and w2_b, not with w2")


__all__ = ["Lokr"]

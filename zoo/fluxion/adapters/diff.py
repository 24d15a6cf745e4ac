"""A stored change of a layer's weight and bias: LyCORIS `full` (`diff`, `diff_b`) and `norm` (`w_norm`,
`b_norm`) updates, on Linear, Conv2d, LayerNorm and GroupNorm layers alike."""

from __future__ import annotations

import torch

from zoo.fluxion.adapters.delta import LayerOp, WeightDelta, as_parameter
from zoo.fluxion.errors import LoraWeightsError


class Diff(WeightDelta):
    """A whole weight change (and optionally a bias change) for one layer.

    Example:
        >>> import torch, zoo.fluxion as fl
        >>> norm = fl.LayerNorm(8)
        >>> diff = fl.Diff("style", fl.LayerOp.of(norm), torch.randn(8), torch.randn(8), scale=0.5)
        >>> diff(torch.randn(2, 8)).shape
        torch.Size([2, 8])
    """

    def __init__(
        self,
        name: str,
        op: LayerOp,
        weight: torch.Tensor,
        bias: torch.Tensor | None = None,
        scale: float = 1.0,
    ) -> None:
        super().__init__(name, op, scale)
        _check_shapes(name, op, weight, bias)
        self.weight = as_parameter(weight)
        self.bias = None if bias is None else as_parameter(bias)

    def unscaled_weight(self) -> torch.Tensor:
        return self.weight

    def unscaled_bias(self) -> torch.Tensor | None:
        return self.bias


def _check_shapes(name: str, op: LayerOp, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    if tuple(weight.shape) != op.weight_shape:
        raise LoraWeightsError(f"{name!r}: a {tuple(weight.shape)} change for a {op.weight_shape} weight")
    if bias is not None and tuple(bias.shape) != op.bias_shape:
        raise LoraWeightsError(
            f"{name!r}: a {tuple(bias.shape)} bias change for a layer whose bias is {op.bias_shape}",
            hint="a bias change needs a layer with a bias of that shape",
        )


__all__ = ["Diff"]

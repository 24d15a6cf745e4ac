"""What every update a `LoraAdapter` holds has in common, and how a weight change reaches the output.

A `LayerDelta` is a named change of one layer, scaled at run time: `LoraAdapter` adds its output to the
layer's, and `delta_weight()` / `delta_bias()` say what it adds to the layer's tensors (for fusing).
Plain LoRAs compute their output from the input (`up(down(x))`); the other kinds (LoHa, LoKr, stored
diffs) rebuild their weight change at every call and run it through the layer's own operation, which
is linear in weight and bias: `op(x, W + dW, b + db) = op(x, W, b) + op(x, dW, db)`. That holds for
normalisation layers too, whose affine part is `normalised(x) * w + b`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from zoo.fluxion.errors import LoraWeightsError
from zoo.fluxion.layers.weighted import Conv2d, GroupNorm, LayerNorm, Linear
from zoo.fluxion.module import ContextModule

OpKind = Literal["linear", "conv2d", "layer_norm", "group_norm"]


@dataclass(frozen=True)
class LayerOp:
    """A layer's operation, with its settings but without its tensors.

    Attributes:
        kind: `linear`, `conv2d`, `layer_norm` or `group_norm`.
        weight_shape: The layer's weight shape (what a weight change must be reshaped to).
        bias_shape: The layer's bias shape, or None when it has no bias.
        stride, padding, dilation, groups: A convolution's settings.
        normalized_shape, num_groups, eps: A normalisation's settings.
    """

    kind: OpKind
    weight_shape: tuple[int, ...]
    bias_shape: tuple[int, ...] | None = None
    stride: tuple[int, ...] = (1, 1)
    padding: tuple[int, ...] | str = (0, 0)
    dilation: tuple[int, ...] = (1, 1)
    groups: int = 1
    normalized_shape: tuple[int, ...] = ()
    num_groups: int = 1
    eps: float = 1e-5

    @staticmethod
    def of(layer: nn.Module) -> LayerOp:
        """The operation of a Linear, a zero-padded Conv2d, or an affine LayerNorm / GroupNorm.

        Example:
            >>> import zoo.fluxion as fl
            >>> op = fl.LayerOp.of(fl.Linear(8, 4, bias=False))
            >>> op.kind, op.weight_shape, op.bias_shape
            ('linear', (4, 8), None)
        """
        op = _op_of(layer)
        if op is None:
            raise LoraWeightsError(
                f"a {type(layer).__name__} takes no weight change",
                hint="Linear, Conv2d (zero padding), and LayerNorm / GroupNorm with weights do",
            )
        return op

    def __call__(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """The operation on `x` with these tensors in place of the layer's."""
        if self.kind == "linear":
            return F.linear(x, weight, bias)
        if self.kind == "conv2d":
            return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)  # pyright: ignore[reportArgumentType]
        if self.kind == "layer_norm":
            return F.layer_norm(x, self.normalized_shape, weight, bias, self.eps)
        return F.group_norm(x, self.num_groups, weight, bias, self.eps)


def _shape(tensor: torch.Tensor | None) -> tuple[int, ...] | None:
    return None if tensor is None else tuple(tensor.shape)


def _op_of(layer: nn.Module) -> LayerOp | None:
    weight, bias = getattr(layer, "weight", None), getattr(layer, "bias", None)
    if weight is None:
        return None
    shapes = tuple(weight.shape), _shape(bias)
    if isinstance(layer, Linear):
        return LayerOp("linear", *shapes)
    if isinstance(layer, Conv2d) and layer.padding_mode == "zeros":
        settings = (layer.stride, layer.padding, layer.dilation, layer.groups)
        return LayerOp("conv2d", *shapes, *settings)  # pyright: ignore[reportArgumentType]
    if isinstance(layer, LayerNorm):
        return LayerOp("layer_norm", *shapes, normalized_shape=tuple(layer.normalized_shape), eps=layer.eps)
    if isinstance(layer, GroupNorm):
        return LayerOp("group_norm", *shapes, num_groups=layer.num_groups, eps=layer.eps)
    return None


class LayerDelta(ContextModule):
    """A named change of one layer, scaled at run time: what a `LoraAdapter` adds to its layer.

    Subclasses give `delta_weight()` (and `delta_bias()` when they change the bias), and set `_scale`
    in their constructor unless they keep the scale elsewhere (a `Lora` keeps it in its `Multiply`).
    """

    name: str
    _scale: float

    @property
    def scale(self) -> float:
        """Multiplier of the change, settable at run time."""
        return self._scale

    @scale.setter
    def scale(self, value: float) -> None:
        self._scale = value

    def delta_weight(self) -> torch.Tensor:
        """What this change adds to its layer's weight, scale included (shaped like the weight)."""
        raise NotImplementedError

    def delta_bias(self) -> torch.Tensor | None:
        """What this change adds to its layer's bias, scale included; None when it leaves the bias."""
        return None


class WeightDelta(LayerDelta):
    """A change rebuilt as weight (and bias) tensors at every call, run through the layer's operation.

    Subclasses give `unscaled_weight()` (any shape with the weight's number of values, reshaped here)
    and may override `unscaled_bias()`.
    """

    def __init__(self, name: str, op: LayerOp, scale: float) -> None:
        super().__init__()
        self.name, self.op, self._scale = name, op, scale

    def unscaled_weight(self) -> torch.Tensor:
        raise NotImplementedError

    def unscaled_bias(self) -> torch.Tensor | None:
        return None

    def delta_weight(self) -> torch.Tensor:
        return self.scale * self.unscaled_weight().reshape(self.op.weight_shape)

    def delta_bias(self) -> torch.Tensor | None:
        bias = self.unscaled_bias()
        return None if bias is None else self.scale * bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.delta_bias()
        return self.op(x, self.delta_weight().to(x.dtype), None if bias is None else bias.to(x.dtype))

    def extra_repr(self) -> str:
        return f"name={self.name!r}, op={self.op.kind}, scale={self.scale}"


def as_parameter(tensor: torch.Tensor) -> nn.Parameter:
    """A parameter holding a copy of `tensor` (its dtype and device)."""
    return nn.Parameter(tensor.detach().clone())


def check_factors(delta: WeightDelta) -> None:
    """The factors must rebuild a change with the layer's output size and number of values."""
    try:
        weight = delta.unscaled_weight()
    except RuntimeError as error:  # factors whose inner sizes disagree
        raise LoraWeightsError(f"{delta.name!r}: the factors do not compose: {error}") from None
    expected = delta.op.weight_shape
    if weight.shape[0] != expected[0] or weight.numel() != torch.Size(expected).numel():
        raise LoraWeightsError(
            f"{delta.name!r}: the factors make a {tuple(weight.shape)} change; the layer's weight is {expected}"
        )


__all__ = ["LayerDelta", "LayerOp", "WeightDelta", "as_parameter", "check_factors"]

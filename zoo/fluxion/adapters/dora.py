"""DoRA: a LoRA (or LoHa, LoKr) whose merged weight is renormalised to a stored magnitude.

The inner update gives a change `D` (alpha folded in, scale 1); `W` is the layer's weight and `m` the
magnitude, one value per output row (or, in LyCORIS files, possibly per input column). How the run-time
scale `s` enters differs between the libraries that write these files, and each is followed exactly:

- `lycoris` (LyCORIS `dora_scale`): `W' = (W + D) · (s · (m / (‖W + D‖ + eps) − 1) + 1)`, so `s`
  blends the renormalisation in (at `s = 0` the layer is untouched);
- `peft` (peft / diffusers `lora_magnitude_vector`): `W' = m · (W + s·D) / ‖W + s·D‖`, so the scale acts
  inside the norm (at `s = 0` the weight is still renormalised to `m`).

The output gains `op(x, W' − W)`; `W` is read from the layer at every call, so the change follows it.
"""

from __future__ import annotations

from typing import Any, Literal, cast

import torch
from torch import nn

from zoo.fluxion.adapters.adapter import Adapter
from zoo.fluxion.adapters.delta import LayerDelta, LayerOp, as_parameter
from zoo.fluxion.chain import Chain
from zoo.fluxion.errors import FluxionError, LoraWeightsError

DoraRule = Literal["lycoris", "peft"]
DORA_RULES: tuple[DoraRule, ...] = ("lycoris", "peft")


class Dora(Chain, LayerDelta):
    """Weight decomposition around an inner update, inside a `LoraAdapter` (it reads the layer's weight).

    Example:
        >>> import torch, zoo.fluxion as fl
        >>> model = fl.Chain(fl.Linear(8, 4))
        >>> inner = fl.LinearLora.from_weights("style", torch.randn(2, 8), torch.randn(4, 2))
        >>> magnitude = model.Linear.weight.norm(dim=1, keepdim=True).detach()
        >>> dora = fl.Dora(inner, fl.LayerOp.of(model.Linear), magnitude, rule="peft", scale=0.5)
        >>> _ = fl.LoraAdapter(model.Linear, dora).inject(model)
        >>> model(torch.randn(3, 8)).shape
        torch.Size([3, 4])
    """

    def __init__(
        self,
        inner: LayerDelta,
        op: LayerOp,
        magnitude: torch.Tensor,
        rule: DoraRule = "lycoris",
        scale: float = 1.0,
    ) -> None:
        self.name, self.op, self.rule, self._scale = inner.name, op, rule, scale
        self.axis = _axis(inner.name, op, tuple(magnitude.shape), rule)
        super().__init__(inner)
        inner.scale = 1.0  # the inner change is D itself: the scale acts through the renormalisation
        self.magnitude = as_parameter(magnitude)

    @property
    def inner(self) -> LayerDelta:
        """The update whose change is renormalised."""
        return cast(LayerDelta, self[0])

    def delta_weight(self) -> torch.Tensor:
        weight = self._layer_weight()
        exact = torch.promote_types(weight.dtype, torch.float32)
        base, change = weight.to(exact), self.inner.delta_weight().to(exact)
        magnitude = self.magnitude.to(exact)
        if self.rule == "peft":
            merged = base + self.scale * change
            return merged * (magnitude / _norm(merged, "out")) - base
        merged = base + change
        factor = magnitude / (_norm(merged, self.axis) + torch.finfo(exact).eps)
        if self.scale != 1:
            factor = self.scale * (factor - 1) + 1
        return merged * factor - base

    def forward(self, *args: Any) -> Any:
        x: torch.Tensor = args[0]
        return self.op(x, self.delta_weight().to(x.dtype), None)

    def _layer_weight(self) -> torch.Tensor:
        """The weight of the layer this DoRA's adapter wraps (through stacked adapters)."""
        target: nn.Module | None = self.parent
        if not isinstance(target, Adapter):
            raise FluxionError(f"DoRA {self.name!r} reads its layer's weight", hint="put it in a LoraAdapter")
        while isinstance(target, Adapter):
            target = cast(Adapter[nn.Module], target).target
        return cast(torch.Tensor, target.weight)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, rule={self.rule!r}, axis={self.axis!r}, scale={self.scale}"


def _norm(weight: torch.Tensor, axis: str) -> torch.Tensor:
    """The norm of each output row (axis `out`) or input column (axis `in`), shaped to broadcast."""
    if axis == "out":
        return _row_norms(weight).reshape(weight.shape[0], *[1] * (weight.dim() - 1))
    return _row_norms(weight.transpose(0, 1)).reshape(1, weight.shape[1], *[1] * (weight.dim() - 2))


def _row_norms(weight: torch.Tensor) -> torch.Tensor:
    # torch leaves Tensor.norm's `dim` untyped
    return cast(torch.Tensor, weight.flatten(1).norm(dim=1))  # pyright: ignore[reportUnknownMemberType]


def _axis(name: str, op: LayerOp, shape: tuple[int, ...], rule: DoraRule) -> str:
    """`out` for a (out, 1, ...) magnitude, `in` for a (1, in, ...) one (LyCORIS only)."""
    ones = (1,) * (len(op.weight_shape) - 1)
    if rule not in DORA_RULES:
        raise LoraWeightsError(f"DoRA {name!r}: rule {rule!r}", hint=f"one of {DORA_RULES}")
    if shape == (op.weight_shape[0], *ones):
        return "out"
    if rule == "lycoris" and shape == (1, op.weight_shape[1], *ones[1:]):
        return "in"
    raise LoraWeightsError(
        f"DoRA {name!r}: a {shape} magnitude for a {op.weight_shape} weight",
        hint="one value per output row, shaped (out, 1, ...); LyCORIS also stores (1, in, ...)",
    )


__all__ = ["DORA_RULES", "Dora", "DoraRule"]

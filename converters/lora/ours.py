"""An entry's tensors in zoo's format: renamed to their role, reshaped to our layer, factor folded in.

- LoRA: `lora_down` takes our layer's input shape (a 1×1 kernel may come and go), `lora_up` gets
  the factor and the conversion's scale;
- LoHa, LoKr: the factors as they are, the factor and scale folded into `hada_w1_a` / `lokr_w1`
  (or `lokr_w1_a`): the change is linear in each;
- full and norm diffs: reshaped to our layer, times the scale;
- DoRA magnitudes: reshaped to our layer, (out, 1, ...) or, LyCORIS on the input axis, (1, in, ...);
  never scaled (a DoRA's scale is not linear: it can only be given at run time).

Values are computed in float32 (at least) and rounded once to the file's dtype.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from converters.lora.entries import LoraEntry
from converters.lora.formats import LoraFile
from zoo.fluxion import LayerOp

Reshape = Callable[[tuple[int, ...]], tuple[int, ...]]


def folded_role(entry: LoraEntry) -> tuple[str, ...]:
    """The role(s) whose tensor takes the factor and the scale."""
    keys = entry.keys
    if entry.kind == "lora":
        return ("lora_up.weight",)
    if entry.kind == "loha":
        return ("hada_w1_a",)
    if entry.kind == "lokr":
        return ("lokr_w1",) if "lokr_w1" in keys else ("lokr_w1_a",)
    return tuple(role for role in ("diff", "diff_b", "w_norm", "b_norm") if role in keys)


def our_shapes(lora: LoraFile, entry: LoraEntry, op: LayerOp) -> dict[str, tuple[int, ...]]:
    """The shape of each of the entry's tensors in our format, on a layer with operation `op`."""
    return {role: _our_shape(entry, role, shape, op) for role, shape in lora.shapes(entry).items()}


def _our_shape(entry: LoraEntry, role: str, shape: tuple[int, ...], op: LayerOp) -> tuple[int, ...]:
    weight = op.weight_shape
    pointwise = (1, 1) if len(weight) == 4 else ()
    if role == "lora_down.weight":
        inputs = weight[1:] if entry.key("lora_mid.weight") is None else (weight[1], *pointwise)
        return (shape[0], *inputs)
    if role == "lora_up.weight":
        return (weight[0], shape[1], *pointwise)
    if role == "diff":
        return weight
    if role == "dora_scale" and _on_input(shape, weight):
        return (1, weight[1], *((1,) * (len(weight) - 2)))
    if role in ("dora_scale", "lora_magnitude_vector"):
        return (weight[0], *((1,) * (len(weight) - 1)))
    return shape


def _on_input(shape: tuple[int, ...], weight: tuple[int, ...]) -> bool:
    """A LyCORIS magnitude per input column: (1, in) or (1, in, 1, 1)."""
    return len(shape) >= 2 and shape[0] == 1 and shape[1] == weight[1] > 1 and math.prod(shape) == weight[1]


def upstream_fit(lora: LoraFile, entry: LoraEntry, op: LayerOp) -> str | None:
    """Whether the file's tensors can be made into our layer's at all (same sizes), before reshaping."""
    shapes = lora.shapes(entry)
    sized = all(
        math.prod(_our_shape(entry, role, shape, op)) == math.prod(shape) for role, shape in shapes.items()
    )
    down = shapes.get("lora_down.weight")
    if sized and down is not None and entry.key("lora_mid.weight") is None:
        kernel, wanted = down[2:], op.weight_shape[2:]
        sized = kernel == wanted or (kernel in ((), (1, 1)) and wanted in ((), (1, 1)))
    if sized:
        return None
    listed = ", ".join(f"{role.removesuffix('.weight')} {shape}" for role, shape in sorted(shapes.items()))
    return f"{listed} do not fit the layer's weight {op.weight_shape}"


def our_tensor(lora: LoraFile, entry: LoraEntry, role: str, op: LayerOp, factor: float) -> torch.Tensor:
    """One tensor in our format: reshaped, and times `factor` when it is the entry's folded role."""
    tensor = lora.tensors[entry.keys[role]]
    shape = _our_shape(entry, role, tuple(tensor.shape), op)
    if role not in folded_role(entry) or factor == 1:
        return tensor.reshape(shape)
    exact = torch.promote_types(tensor.dtype, torch.float32)
    return (tensor.to(exact) * factor).to(tensor.dtype).reshape(shape)


__all__ = ["folded_role", "our_shapes", "our_tensor", "upstream_fit"]

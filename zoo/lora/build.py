"""From one layer's update (zoo's format) to the fluxion module that applies it, typed like the layer."""

from __future__ import annotations

import torch
from torch import nn

import zoo.fluxion as fl
from zoo.lora.kinds import DORA_ROLES, fit_problem, shapes_problem
from zoo.lora.weights import LayerUpdate


def layer_op(layer: nn.Module) -> fl.LayerOp | None:
    """The layer's operation, or None for a layer that takes no update."""
    try:
        return fl.LayerOp.of(layer)
    except fl.LoraWeightsError:
        return None


def update_problem(path: str, layer: nn.Module, update: LayerUpdate) -> str | None:
    """What keeps the update off this layer, or None."""
    op = layer_op(layer)
    if op is None:
        return f"{path}: a {type(layer).__name__} cannot take a LoRA (Linear, plain Conv2d, LayerNorm, GroupNorm)"
    problem = shapes_problem(update.kind, update.shapes) or fit_problem(update.kind, update.shapes, op)
    return None if problem is None else f"{path}: {problem}"


def build_delta(name: str, layer: nn.Module, update: LayerUpdate, scale: float) -> fl.LayerDelta:
    """The module applying `update` to `layer` at `scale` (its tensors copied, in the layer's dtype)."""
    like = _like(layer)
    tensors = {role: tensor.to(like) for role, tensor in update.tensors.items()}
    op = fl.LayerOp.of(layer)
    magnitude = update.magnitude_role
    inner = _plain(name, layer, op, update, tensors, 1.0 if magnitude else scale)
    if magnitude is None:
        return inner
    return fl.Dora(inner, op, tensors[magnitude], rule=DORA_ROLES[magnitude], scale=scale)


def _like(layer: nn.Module) -> torch.Tensor:
    weight = getattr(layer, "weight", None)
    assert isinstance(weight, torch.Tensor)
    return weight


def _plain(
    name: str, layer: nn.Module, op: fl.LayerOp, update: LayerUpdate, t: dict[str, torch.Tensor], scale: float
) -> fl.LayerDelta:
    if update.kind == "lora":
        return _lora(name, layer, t, scale)
    if update.kind == "loha":
        factors = [t["hada_w1_a"], t["hada_w1_b"], t["hada_w2_a"], t["hada_w2_b"]]
        return fl.Loha(name, op, *factors, t1=t.get("hada_t1"), t2=t.get("hada_t2"), scale=scale)
    if update.kind == "lokr":
        factors = {
            role.removeprefix("lokr_"): tensor for role, tensor in t.items() if role.startswith("lokr_")
        }
        return fl.Lokr(name, op, **factors, scale=scale)
    weight, bias = ("diff", "diff_b") if update.kind == "full" else ("w_norm", "b_norm")
    return fl.Diff(name, op, t[weight], t.get(bias), scale=scale)


def _lora(name: str, layer: nn.Module, t: dict[str, torch.Tensor], scale: float) -> fl.Lora:
    down, up, mid = t["lora_down.weight"], t["lora_up.weight"], t.get("lora_mid.weight")
    if isinstance(layer, fl.Linear):
        lora: fl.Lora = fl.LinearLora.for_target(name, layer, down.shape[0], scale)
    elif mid is None:
        assert isinstance(layer, fl.Conv2d)
        lora = fl.Conv2dLora.for_target(name, layer, down.shape[0], scale)
    else:
        assert isinstance(layer, fl.Conv2d)
        settings = (layer.stride, layer.padding)
        return fl.TuckerConv2dLora.from_weights(name, down, mid, up, scale, *settings)  # pyright: ignore[reportArgumentType]
    lora.load_weights(down, up)
    return lora


__all__ = ["build_delta", "layer_op", "update_problem"]

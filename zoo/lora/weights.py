"""Tensors in zoo's LoRA format, grouped by the layer they change and checked on their own."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from zoo.errors import FormatError, TensorValueError, few
from zoo.lora.kinds import DORA_ROLES, KIND_OF_ROLE, Kind, kind_of, rank_of, roles_problem

DOWN_SUFFIX = ".lora_down.weight"
UP_SUFFIX = ".lora_up.weight"
# Longest first, so `<path>.lokr_w1_a` is not read as role `a` of a layer named `<path>.lokr_w1`.
_ROLES = sorted([*KIND_OF_ROLE, *DORA_ROLES], key=len, reverse=True)


@dataclass(frozen=True)
class LayerUpdate:
    """One layer's update: its kind and its tensors by role (alpha folded in), before the run-time scale."""

    path: str
    kind: Kind
    tensors: Mapping[str, torch.Tensor]

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {role: tuple(tensor.shape) for role, tensor in self.tensors.items()}

    @property
    def rank(self) -> int | None:
        return rank_of(self.kind, self.shapes)

    @property
    def magnitude_role(self) -> str | None:
        """`dora_scale` or `lora_magnitude_vector` when the update is a DoRA."""
        return next((role for role in self.tensors if role in DORA_ROLES), None)


def split_role(key: str) -> tuple[str, str] | None:
    """(layer path, role) of a key in zoo's format, or None when it ends with no role."""
    role = next((role for role in _ROLES if key.endswith("." + role)), None)
    return None if role is None else (key.removesuffix("." + role), role)


def split_lora_weights(weights: Mapping[str, torch.Tensor]) -> dict[str, LayerUpdate]:
    """Group `<layer path>.<role>` tensors by layer; any other key, or an incomplete set, is an error."""
    stray = sorted(key for key in weights if split_role(key) is None)
    if stray:
        raise FormatError(
            f"{len(stray)} key(s) are not `<layer path>.<role>` (e.g. `{DOWN_SUFFIX}`, `.hada_w1_a`, `.diff`): "
            f"{few(stray, 8, '; ')}",
            tensor=stray[0],
        )
    layers: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in weights.items():
        path, role = split_role(key)  # pyright: ignore[reportGeneralTypeIssues]
        layers.setdefault(path, {})[role] = tensor
    return {path: _update(path, tensors) for path, tensors in sorted(layers.items())}


def _update(path: str, tensors: dict[str, torch.Tensor]) -> LayerUpdate:
    problem = roles_problem(tensors)
    kind = kind_of(tensors)
    if problem is not None or kind is None:
        raise FormatError(f"layer {path}: {problem}", tensor=f"{path}.{sorted(tensors)[0]}")
    return LayerUpdate(path, kind, tensors)


def check_finite(updates: Mapping[str, LayerUpdate]) -> None:
    """NaN or Inf in any tensor is an error naming it."""
    for path, update in updates.items():
        for role, tensor in update.tensors.items():
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                raise TensorValueError("LoRA weights hold NaN or Inf", tensor=f"{path}.{role}")


__all__ = ["DOWN_SUFFIX", "UP_SUFFIX", "LayerUpdate", "check_finite", "split_lora_weights", "split_role"]

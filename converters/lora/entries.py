"""A LoRA file's entries: the tensors of each module the file changes, grouped, typed and checked.

An entry is one module's update as the file stores it: its tensors by role (zoo's role names, see
`zoo.lora.kinds`, plus `alpha`), its kind (LoRA, LoHa, LoKr, full, norm) and whether it is a DoRA.
Files may mix kinds from one module to the next; within one module the tensors must make one update.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from converters.lora.keys import key_format
from zoo.errors import FormatError, TensorValueError, few
from zoo.lora.kinds import DORA_ROLES, ROLES, Kind, kind_of, roles_problem, shapes_problem


@dataclass(frozen=True)
class LoraEntry:
    """One module's update as the file stores it.

    Attributes:
        name: The file's name for the module it changes (its keys less their role suffix).
        component: `unet`, `text_encoder` or `text_encoder_2`; "" where the scheme names none.
        kind: `lora`, `loha`, `lokr`, `full` or `norm`.
        roles: (role, key) pairs, sorted by role: which key of the file holds each tensor.
    """

    name: str
    component: str
    kind: Kind
    roles: tuple[tuple[str, str], ...]

    @property
    def keys(self) -> dict[str, str]:
        """Key of each role."""
        return dict(self.roles)

    def key(self, role: str) -> str | None:
        return self.keys.get(role)

    @property
    def first_key(self) -> str:
        """The key of the entry's first tensor of its kind (`lora_down.weight` for a LoRA): for messages."""
        keys = self.keys
        return next(keys[role] for role in ROLES[self.kind] if role in keys)

    @property
    def down_key(self) -> str:
        return self.keys.get("lora_down.weight", self.first_key)

    @property
    def up_key(self) -> str:
        return self.keys.get("lora_up.weight", self.first_key)

    @property
    def alpha_key(self) -> str | None:
        return self.keys.get("alpha")

    @property
    def magnitude_role(self) -> str | None:
        """`dora_scale` or `lora_magnitude_vector` when the entry is a DoRA."""
        return next((role for role, _key in self.roles if role in DORA_ROLES), None)

    @property
    def tensor_roles(self) -> dict[str, str]:
        """Key of each role but alpha."""
        return {role: key for role, key in self.roles if role != "alpha"}


def group_entries(keys: Sequence[str], file: Path | None = None) -> tuple[LoraEntry, ...]:
    """Group keys by module; a module whose tensors do not make one update is an error (all are listed)."""
    groups: dict[tuple[str, str], dict[str, str]] = {}
    for key in keys:
        found = key_format(key)
        assert found is not None  # detect_lora_format ran first
        _scheme, component, name, role = found
        roles = groups.setdefault((component, name), {})
        if role in roles:
            raise FormatError(f"two keys give the {role} of {name!r}: {roles[role]!r}, {key!r}", file=file)
        roles[role] = key
    problems = sorted(
        f"{name} ({problem})"
        for (_c, name), roles in groups.items()
        if (problem := roles_problem(set(roles) - {"alpha"})) is not None
    )
    if problems:
        raise FormatError(f"{len(problems)} entries are incomplete or mixed: {few(problems)}", file=file)
    return tuple(
        _entry(name, component, roles)
        for (component, name), roles in sorted(groups.items(), key=lambda i: i[0][1])
    )


def _entry(name: str, component: str, roles: Mapping[str, str]) -> LoraEntry:
    kind = kind_of(set(roles) - {"alpha"})
    assert kind is not None  # roles_problem found none
    return LoraEntry(name, component, kind, tuple(sorted(roles.items())))


def entry_shapes(entry: LoraEntry, tensors: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    """The shape of each tensor of the entry but alpha, by role."""
    return {role: tuple(tensors[key].shape) for role, key in entry.tensor_roles.items()}


def check_entries(entries: Sequence[LoraEntry], tensors: Mapping[str, torch.Tensor], file: Path) -> None:
    """Finite values, consistent shapes in each entry, and scalar alphas."""
    for key, tensor in tensors.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise TensorValueError("the LoRA holds NaN or Inf", file=file, tensor=key)
    for entry in entries:
        shapes = entry_shapes(entry, tensors)
        problem = shapes_problem(entry.kind, shapes)
        if problem is not None:
            listed = ", ".join(f"{key} {shapes[role]}" for role, key in entry.tensor_roles.items())
            raise FormatError(problem, file=file, tensor=entry.first_key, hint=f"the tensors: {listed}")
        if entry.alpha_key is not None and tensors[entry.alpha_key].numel() != 1:
            raise FormatError("alpha must be a single number", file=file, tensor=entry.alpha_key)


__all__ = ["LoraEntry", "check_entries", "entry_shapes", "group_entries"]

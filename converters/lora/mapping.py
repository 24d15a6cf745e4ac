"""Placing a LoRA file's entries on a base: each entry on exactly one chain layer, or no load at all.

file entry -> upstream module (`names`) -> our layer (`base`, from the traced key map) -> shapes checked
-> our format: `<component>.<chain path>.lora_down.weight` / `.lora_up.weight`, with the entry's
alpha factor and the caller's scale folded into `up` (in float32, then back to the file's dtype).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial

import torch

from converters._checkpoints import TensorPlan
from converters.lora.base import LoraBase, Placement, family_base, lora_families
from converters.lora.formats import LoraEntry, LoraFile
from converters.lora.names import entry_factor, upstream_module_names
from zoo.errors import ConfigError, CoverageError, ZooError, few
from zoo.lora import DOWN_SUFFIX, UP_SUFFIX


@dataclass(frozen=True)
class PlacedEntry:
    """One entry on one layer of ours."""

    entry: LoraEntry
    lora_component: str
    module: str
    placement: Placement
    rank: int
    factor: float

    @property
    def key(self) -> str:
        """The layer's key prefix in our LoRA format: `<component>.<chain path>`."""
        return f"{self.placement.component}.{self.placement.path}"


@dataclass(frozen=True)
class MappedLora:
    """A LoRA file placed on a base, ready to write or inject.

    Attributes:
        lora: The file.
        base: The base it was placed on.
        scale: The caller's scale, folded into the weights with each entry's alpha factor.
        placed: The entries, each on its layer.
        skipped: Entries for components the caller did not ask for.
    """

    lora: LoraFile
    base: LoraBase
    scale: float
    placed: tuple[PlacedEntry, ...]
    skipped: tuple[LoraEntry, ...] = ()

    @property
    def components(self) -> list[str]:
        return sorted({placed.placement.component for placed in self.placed})

    @property
    def ranks(self) -> list[int]:
        return sorted({placed.rank for placed in self.placed})

    def plans(self) -> list[TensorPlan]:
        """Our tensors, described before they exist (the streaming writer produces them one by one)."""
        plans: list[TensorPlan] = []
        for placed in self.placed:
            down, up = self.lora.tensors[placed.entry.down_key], self.lora.tensors[placed.entry.up_key]
            plans.append(
                TensorPlan(
                    placed.key + DOWN_SUFFIX, _down_shape(placed), down.dtype, partial(self._down, placed)
                )
            )
            plans.append(
                TensorPlan(placed.key + UP_SUFFIX, _up_shape(placed), up.dtype, partial(self._up, placed))
            )
        return plans

    def weights(self, component: str) -> dict[str, torch.Tensor]:
        """Our format for one of our components, keyed by chain path (the component prefix removed)."""
        prefix = f"{component}."
        return {
            plan.name.removeprefix(prefix): plan.produce()
            for plan in self.plans()
            if plan.name.startswith(prefix)
        }

    def _down(self, placed: PlacedEntry) -> torch.Tensor:
        return self.lora.tensors[placed.entry.down_key].reshape(_down_shape(placed))

    def _up(self, placed: PlacedEntry) -> torch.Tensor:
        """`up` times alpha factor and scale, computed in float32 (at least) and rounded once."""
        up = self.lora.tensors[placed.entry.up_key]
        exact = torch.promote_types(up.dtype, torch.float32)
        folded = up.to(exact) * (placed.factor * self.scale)
        return folded.to(up.dtype).reshape(_up_shape(placed))


def _down_shape(placed: PlacedEntry) -> tuple[int, ...]:
    return (placed.rank, *placed.placement.weight_shape[1:])


def _up_shape(placed: PlacedEntry) -> tuple[int, ...]:
    out = placed.placement.weight_shape[0]
    return (out, placed.rank) if placed.placement.kind == "linear" else (out, placed.rank, 1, 1)


# -- placing ------------------------------------------------------------------------------------------


def _candidates(module: str) -> list[str]:
    """CLIPTextModel's names lose `text_model.` in transformers 5; files carry either form.

    Other models have no module under `text_model.`, so the extra candidates find nothing there.
    """
    bare = module.removeprefix("text_model.")
    return list(dict.fromkeys([module, bare, f"text_model.{bare}"]))


def _shape_problem(lora: LoraFile, entry: LoraEntry, placement: Placement) -> str | None:
    """Down must be (rank, in, *kernel) and up (out, rank, 1, 1); 1×1 kernels may be left out."""
    down, up = lora.tensors[entry.down_key].shape, lora.tensors[entry.up_key].shape
    out, inputs, kernel = (
        placement.weight_shape[0],
        placement.weight_shape[1],
        tuple(placement.weight_shape[2:]),
    )
    pointwise = ((), (1, 1))
    kernel_fits = tuple(down[2:]) == kernel or (tuple(down[2:]) in pointwise and kernel in pointwise)
    if down[1] == inputs and kernel_fits and up[0] == out and tuple(up[2:]) in pointwise:
        return None
    layer = f"{placement.kind} weight {tuple(placement.weight_shape)}"
    return f"down {tuple(down)} / up {tuple(up)} do not fit {placement.path} ({layer})"


def _place_one(
    lora: LoraFile, base: LoraBase, entry: LoraEntry, lora_component: str, module: str
) -> PlacedEntry | str:
    """The entry on its layer, or what stops it."""
    where = f"{entry.name} ({lora_component} {module})"
    model = base.model_for(lora_component)
    if model is None:
        return f"{where}: {base.description} has no {lora_component}"
    index, prefix = model.index(), model.prefix(lora_component)
    for candidate in _candidates(module):
        if (reason := index.refused.get(prefix + candidate)) is not None:
            return f"{where}: {reason}"
        placement = index.placements.get(prefix + candidate)
        if placement is not None:
            problem = _shape_problem(lora, entry, placement)
            if problem is not None:
                return f"{where}: {problem}"
            factor = entry_factor(lora, entry, module)
            return PlacedEntry(entry, lora_component, candidate, placement, lora.rank(entry), factor)
    return f"{where}: no such module"


def _place_all(
    lora: LoraFile, base: LoraBase, names: dict[LoraEntry, str], entries: Iterable[tuple[LoraEntry, str]]
) -> tuple[list[PlacedEntry], list[str]]:
    placed: list[PlacedEntry] = []
    problems: list[str] = []
    taken: dict[str, str] = {}
    for entry, component in entries:
        result = _place_one(lora, base, entry, component, names[entry])
        if isinstance(result, str):
            problems.append(result)
        elif result.key in taken:
            problems.append(f"{entry.name}: lands on {result.key} like {taken[result.key]}")
        else:
            taken[result.key] = entry.name
            placed.append(result)
    return placed, problems


def _peft_component(
    lora: LoraFile, base: LoraBase, names: dict[LoraEntry, str], allowed: Sequence[str]
) -> tuple[list[PlacedEntry], list[str]]:
    """PEFT files do not say which model they are for: the one component every entry fits."""
    tries = {c: _place_all(lora, base, names, ((e, c) for e in lora.entries)) for c in allowed}
    fitting = [c for c, (_placed, problems) in tries.items() if not problems]
    if len(fitting) > 1:
        raise ConfigError(
            f"this PEFT LoRA fits {' and '.join(fitting)} alike: cannot tell which it is for",
            file=lora.path,
            hint="load it into that model directly (zoo.lora via converters.lora.load_lora)",
        )
    if not tries:
        return [], [f"{base.description} has none of {', '.join(allowed)}"]
    chosen = fitting[0] if fitting else min(tries, key=lambda c: len(tries[c][1]))
    return tries[chosen]


def map_lora(
    lora: LoraFile, base: LoraBase, *, scale: float = 1.0, components: Sequence[str] | None = None
) -> MappedLora:
    """Place every entry of `lora` on `base`; any entry that does not land on exactly one layer fails all.

    Args:
        lora: A file read by `read_lora` (not our own format: that names chain layers already).
        base: The base.
        scale: Multiplies every update (folded into the weights with each entry's alpha factor).
        components: Only map entries for these LoRA components (`unet`, `text_encoder`,
            `text_encoder_2`); the others are returned as `skipped`. Default: every entry must place.

    Raises:
        CoverageError: Entries that cannot be placed, each with the reason (listed in the message).
    """
    names = upstream_module_names(lora, base.layers_per_block)
    allowed = list(components) if components is not None else list(base.lora_components)
    if lora.format == "peft":
        skipped: list[LoraEntry] = []
        placed, problems = _peft_component(lora, base, names, allowed)
    else:
        chosen = [e for e in lora.entries if components is None or e.component in allowed]
        skipped = [e for e in lora.entries if e not in chosen]
        placed, problems = _place_all(lora, base, names, ((e, e.component) for e in chosen))
    if problems:
        raise CoverageError(
            f"{len(problems)} of {len(lora.entries)} LoRA entries cannot be placed on {base.description}: "
            + few(problems, 6, "; "),
            file=lora.path,
            hint=_family_hint(lora, base),
        )
    return MappedLora(lora, base, scale, tuple(placed), tuple(skipped))


def _family_hint(lora: LoraFile, base: LoraBase) -> str | None:
    """When every entry's module exists, by name, in another family: say so."""
    for family in lora_families():
        if family == base.family:
            continue
        try:
            other = family_base(family)
            names = upstream_module_names(lora, other.layers_per_block)
        except ZooError:
            continue
        if lora.entries and all(_exists(other, e, names[e]) for e in lora.entries):
            return f"every module this LoRA names exists in {family}: is it a LoRA for {family}?"
    return "check that the LoRA was trained for this base"


def _exists(base: LoraBase, entry: LoraEntry, module: str) -> bool:
    """Whether the base's upstream models have a module of that name (names only: no trace needed)."""
    components = [entry.component] if entry.component else list(base.lora_components)
    for component in components:
        model = base.model_for(component)
        if model is not None:
            names, prefix = model.upstream_modules(), model.prefix(component)
            if any(prefix + c in names for c in _candidates(module)):
                return True
    return False


__all__ = ["MappedLora", "PlacedEntry", "map_lora"]

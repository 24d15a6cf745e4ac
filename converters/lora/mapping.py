"""Placing a LoRA file's entries on a base: each entry on exactly one chain layer, or no load at all.

file entry -> upstream module (`names`) -> our layer (`base`, from the traced key map) -> shapes checked
(`converters.lora.ours`, then zoo's own rules, `zoo.lora.kinds`) -> our format:
`<component>.<chain path>.<role>`, each entry's alpha factor and the caller's scale folded in.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial

import torch

from converters._checkpoints import TensorPlan
from converters.lora.base import LoraBase, Placement, family_base, lora_families
from converters.lora.entries import LoraEntry
from converters.lora.factors import entry_factor
from converters.lora.formats import LoraFile
from converters.lora.names import upstream_module_names
from converters.lora.ours import our_shapes, our_tensor, upstream_fit
from zoo.errors import ConfigError, CoverageError, ZooError, few
from zoo.lora.kinds import DORA_ROLES, fit_problem

_COMPONENT_LESS = ("peft", "lycoris")  # formats whose keys do not say which model they are for


@dataclass(frozen=True)
class PlacedEntry:
    """One entry on one layer of ours."""

    entry: LoraEntry
    lora_component: str
    module: str
    placement: Placement
    rank: int | None
    factor: float

    @property
    def key(self) -> str:
        """The layer's key prefix in our LoRA format: `<component>.<chain path>`."""
        return f"{self.placement.component}.{self.placement.path}"

    def describe(self) -> dict[str, object]:
        """The update's kind and parameters, as recorded in our file's header."""
        role = self.entry.magnitude_role
        return {
            "kind": self.entry.kind,
            "rank": self.rank,
            "factor": self.factor,
            "dora": None if role is None else DORA_ROLES[role],
            "tucker": any(r in self.entry.keys for r in ("lora_mid.weight", "hada_t1", "lokr_t2")),
            "module": self.module,
        }


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
        return sorted({placed.rank for placed in self.placed if placed.rank is not None})

    def plans(self) -> list[TensorPlan]:
        """Our tensors, described before they exist (the streaming writer produces them one by one)."""
        plans: list[TensorPlan] = []
        for placed in self.placed:
            op, factor = placed.placement.op, placed.factor * self.scale
            for role, shape in our_shapes(self.lora, placed.entry, op).items():
                dtype = self.lora.tensors[placed.entry.keys[role]].dtype
                produce = partial(our_tensor, self.lora, placed.entry, role, op, factor)
                plans.append(TensorPlan(f"{placed.key}.{role}", shape, dtype, produce))
        return plans

    def weights(self, component: str) -> dict[str, torch.Tensor]:
        """Our format for one of our components, keyed by chain path (the component prefix removed)."""
        prefix = f"{component}."
        return {
            plan.name.removeprefix(prefix): plan.produce()
            for plan in self.plans()
            if plan.name.startswith(prefix)
        }


# -- placing ------------------------------------------------------------------------------------------


def _candidates(module: str) -> list[str]:
    """CLIPTextModel's names lose `text_model.` in transformers 5; files carry either form.

    Other models have no module under `text_model.`, so the extra candidates find nothing there.
    """
    bare = module.removeprefix("text_model.")
    return list(dict.fromkeys([module, bare, f"text_model.{bare}"]))


def _fit(lora: LoraFile, entry: LoraEntry, placement: Placement) -> str | None:
    """What keeps the entry off the layer: sizes first, then our format's exact rules."""
    op = placement.op
    problem = upstream_fit(lora, entry, op) or fit_problem(entry.kind, our_shapes(lora, entry, op), op)
    return None if problem is None else f"{problem} ({placement.path}, {op.kind} {op.weight_shape})"


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
            problem = _fit(lora, entry, placement)
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


def _one_component(
    lora: LoraFile, base: LoraBase, allowed: Sequence[str]
) -> tuple[list[PlacedEntry], list[str]]:
    """PEFT and `lycoris_*` files do not say which model they are for: the one component every entry fits."""
    tries = {
        c: _place_all(lora, base, upstream_module_names(lora, base, c), ((e, c) for e in lora.entries))
        for c in allowed
    }
    fitting = [c for c, (_placed, problems) in tries.items() if not problems]
    if len(fitting) > 1:
        raise ConfigError(
            f"this {lora.format} LoRA fits {' and '.join(fitting)} alike: cannot tell which it is for",
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
            `text_encoder_2`); the others are returned as `skipped` (all of a PEFT or `lycoris_*` file's
            when none fits these components). Default: every entry must place.

    Raises:
        CoverageError: Entries that cannot be placed, each with the reason (listed in the message).
        ConfigError: A scale other than 1 for a file with DoRA entries (it cannot be folded in).
    """
    _check_scale(lora, scale)
    allowed = list(components) if components is not None else list(base.lora_components)
    skipped: list[LoraEntry] = []
    if lora.format in _COMPONENT_LESS:
        placed, problems = _one_component(lora, base, allowed)
        if not placed and components is not None:  # made for another model: nothing here, not an error
            skipped, problems = list(lora.entries), []
    else:
        names = upstream_module_names(lora, base)
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


def _check_scale(lora: LoraFile, scale: float) -> None:
    doras = [entry.name for entry in lora.entries if entry.magnitude_role is not None]
    if doras and scale != 1:
        raise ConfigError(
            f"a scale of {scale:g} cannot be folded into DoRA entries (e.g. {doras[0]}): DoRA is not linear in it",
            file=lora.path,
            hint="convert at scale 1 and give the scale when loading (load_lora(..., scale=...))",
        )


def _family_hint(lora: LoraFile, base: LoraBase) -> str | None:
    """When every entry's module exists, by name, in another family: say so."""
    for family in lora_families():
        if family == base.family:
            continue
        try:
            other = family_base(family)
            if lora.entries and _all_exist(lora, other):
                return f"every module this LoRA names exists in {family}: is it a LoRA for {family}?"
        except ZooError:
            continue
    return "check that the LoRA was trained for this base"


def _all_exist(lora: LoraFile, base: LoraBase) -> bool:
    """Whether the base's upstream models have a module of each entry's name (names only: no trace)."""
    if lora.format in _COMPONENT_LESS:
        return any(
            all(_exists(base, c, module) for module in upstream_module_names(lora, base, c).values())
            for c in base.lora_components
        )
    names = upstream_module_names(lora, base)
    return all(_exists(base, entry.component, names[entry]) for entry in lora.entries)


def _exists(base: LoraBase, component: str, module: str) -> bool:
    model = base.model_for(component)
    if model is None:
        return False
    names, prefix = model.upstream_modules(), model.prefix(component)
    return any(prefix + c in names for c in _candidates(module))


__all__ = ["MappedLora", "PlacedEntry", "map_lora"]

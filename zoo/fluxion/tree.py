"""Models as text: a tree that reads like the architecture, and compact views of values.

Each line is a child's name (the path to use in `model.layer(...)`) with the layer's essential
attributes (its `extra_repr`: in_features, kernel size, ...); the class is named only where the name does
not already say it. Consecutive siblings that render identically (ten transformer layers of a level) are
folded into one entry marked with their count.

Example:
    >>> import zoo.fluxion as fl
    >>> print(fl.Chain(fl.Linear(4, 4), fl.Linear(4, 4), fl.Chain(fl.SiLU(), fl.Flatten(1))))
    Chain
    ├── Linear_1..Linear_2(in_features=4, out_features=4, bias=True) ×2
    └── Chain
        ├── SiLU
        └── Flatten(start_dim=1, end_dim=-1)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

FORK, LAST, PIPE, SPACE = "├── ", "└── ", "│   ", "    "
_COUNTER = re.compile(r"_\d+$")
MAX_ITEMS_SHOWN = 6
"""How many items of a tuple or list `summarize` shows before eliding the rest."""


def arguments(module: nn.Module) -> str:
    """`(extra_repr)` on one line, or nothing when the layer has no attributes to show."""
    extra = " ".join(module.extra_repr().split("\n"))
    return f"({extra})" if extra else ""


def entry(name: str, module: nn.Module) -> str:
    """One line for a child: its name, its class where the name does not say it, its attributes."""
    return name + _class_unless_named(name, module) + arguments(module)


def _class_unless_named(name: str, module: nn.Module) -> str:
    cls = type(module).__name__
    return "" if _COUNTER.sub("", name) == cls else f": {cls}"


def render(module: nn.Module) -> str:
    """The whole tree under `module`, identical consecutive siblings folded."""
    return "\n".join([type(module).__name__ + arguments(module), *_children_lines(module)])


@dataclass(frozen=True)
class _Rendered:
    name: str
    module: nn.Module
    arguments: str
    lines: tuple[str, ...]  # the child's own children, already drawn

    def same_as(self, other: _Rendered) -> bool:
        return (
            type(self.module) is type(other.module)
            and self.arguments == other.arguments
            and self.lines == other.lines
        )


def _children_lines(module: nn.Module) -> list[str]:
    rendered = [
        _Rendered(name, child, arguments(child), tuple(_children_lines(child)))
        for name, child in module.named_children()
    ]
    groups = _fold(rendered)
    lines: list[str] = []
    for index, group in enumerate(groups):
        first, rest = (LAST, SPACE) if index == len(groups) - 1 else (FORK, PIPE)
        lines.append(first + _group_head(group))
        lines.extend(rest + line for line in group[0].lines)
    return lines


def _fold(rendered: Sequence[_Rendered]) -> list[list[_Rendered]]:
    groups: list[list[_Rendered]] = []
    for item in rendered:
        if groups and groups[-1][0].same_as(item):
            groups[-1].append(item)
        else:
            groups.append([item])
    return groups


def _group_head(group: Sequence[_Rendered]) -> str:
    first, last = group[0], group[-1]
    if len(group) == 1:
        return entry(first.name, first.module)
    names = f"{first.name}..{last.name}{_class_unless_named(first.name, first.module)}"
    return f"{names}{first.arguments} ×{len(group)}"


def summarize(value: object) -> str:
    """A compact description of a value a layer received: shapes, dtypes and devices of tensors."""
    if isinstance(value, torch.Tensor):
        dtype = str(value.dtype).removeprefix("torch.")
        return f"Tensor{list(value.shape)} {dtype} {value.device}"
    if isinstance(value, tuple | list):
        inside = summarize_all(cast(Sequence[object], value))
        return f"({inside})" if isinstance(value, tuple) else f"[{inside}]"
    if value is None or isinstance(value, bool | int | float | str):
        return repr(value)
    return type(value).__name__


def summarize_all(values: Sequence[object]) -> str:
    """`summarize` of each value, comma-separated, eliding all but the first few."""
    shown = [summarize(value) for value in values[:MAX_ITEMS_SHOWN]]
    more = [f"… {len(values) - MAX_ITEMS_SHOWN} more"] if len(values) > MAX_ITEMS_SHOWN else []
    return ", ".join(shown + more)


__all__ = ["arguments", "entry", "render", "summarize", "summarize_all"]

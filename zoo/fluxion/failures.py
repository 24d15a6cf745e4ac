"""Where a forward failed: the failing layer's path, the tree around it and the inputs it received.

When a layer raises, the chain that called it records the place on the exception (`record`); the chains
above see it is recorded and let it pass. The chain the caller called then raises, once, a twin of the
exception (same type, same message, same attributes) carrying that view as a note, chained to the
original (`located`). Nothing runs on the success path but the `try` blocks, which cost nothing in
Python 3.11.

Example:
    >>> import torch, zoo.fluxion as fl
    >>> model = fl.Chain(fl.Linear(4, 8), fl.Chain(fl.SiLU(), fl.Linear(6, 2)))
    >>> try:
    ...     model(torch.ones(3, 4))
    ... except RuntimeError as error:
    ...     print(error.__notes__[0])
    Chain.Linear (Linear) failed in Chain; it received Tensor[3, 8] float32 cpu
    Chain
    └── Chain
        ├── SiLU
        └── Linear(in_features=6, out_features=2, bias=True)  ◀ failed here
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import nn

from zoo.fluxion.module import ContextModule
from zoo.fluxion.tree import FORK, LAST, SPACE, entry, summarize_all

if TYPE_CHECKING:
    from zoo.fluxion.chain import Chain

_ATTRIBUTE = "_fluxion_failure"
SIBLINGS_SHOWN = 2
"""How many siblings the view shows on each side of the failing layer."""
MARK = "  ◀ failed here"


@dataclass
class _Failure:
    view: str
    shown: bool = False


def record(error: Exception, parent: Chain, name: str, layer: nn.Module, inputs: Sequence[object]) -> None:
    """Remember that `layer`, the child `name` of `parent`, raised `error` on `inputs` (once: the deepest)."""
    if _failure_of(error) is None:
        setattr(error, _ATTRIBUTE, _Failure(_safely(lambda: _child_view(parent, name, layer, inputs))))


def located(error: Exception, called: ContextModule, inputs: Sequence[object]) -> Exception | None:
    """The exception to raise from `error` at the chain the caller called, or None to re-raise `error`.

    None also when the error was shown already (a model running another model), or when its type cannot
    be rebuilt with the same message: the view is then added to `error` itself.
    """
    failure = _failure_of(error)
    if failure is None:  # raised by the called chain's own forward, not by a child
        failure = _Failure(_safely(lambda: _own_view(called, inputs)))
        setattr(error, _ATTRIBUTE, failure)
    if failure.shown:
        return None
    failure.shown = True
    twin = _twin(error)
    (error if twin is None else twin).add_note(failure.view)
    return twin


def _failure_of(error: Exception) -> _Failure | None:
    failure = getattr(error, _ATTRIBUTE, None)
    return failure if isinstance(failure, _Failure) else None


def _twin(error: Exception) -> Exception | None:
    """A new exception of the same type, arguments and attributes, without the original's notes."""
    try:
        twin = type(error)(*error.args)
        twin.__dict__.update({key: value for key, value in vars(error).items() if key != "__notes__"})
    except Exception:  # a constructor that does not take its own args back: keep the original
        return None
    return twin if str(twin) == str(error) else None


def _safely(describe: Callable[[], str]) -> str:
    # Describing the place must never hide the error being described.
    try:
        return describe()
    except Exception as problem:
        return f"(fluxion could not describe where this happened: {problem!r})"


def _own_view(called: ContextModule, inputs: Sequence[object]) -> str:
    path = called.get_path() or type(called).__name__
    return f"{path} ({type(called).__name__}) failed in its own forward; it received {summarize_all(inputs)}"


def _child_view(parent: Chain, name: str, layer: nn.Module, inputs: Sequence[object]) -> str:
    ancestors = [*reversed(parent.get_parents()), parent]
    root = ancestors[0]
    path = ".".join(filter(None, [parent.get_path(), name]))
    received = summarize_all(inputs)
    header = f"{path} ({type(layer).__name__}) failed in {type(root).__name__}; it received {received}"
    return "\n".join([header, *_ancestor_lines(ancestors), *_sibling_lines(parent, name, len(ancestors) - 1)])


def _ancestor_lines(ancestors: Sequence[Chain]) -> list[str]:
    lines = [type(ancestors[0]).__name__]
    for depth, (upper, lower) in enumerate(itertools.pairwise(ancestors)):
        lines.append(SPACE * depth + LAST + entry(upper.name_of(lower), lower))
    return lines


def _sibling_lines(parent: Chain, name: str, depth: int) -> list[str]:
    children = list(parent.named_children())
    at = [child_name for child_name, _ in children].index(name)
    first, last = max(0, at - SIBLINGS_SHOWN), min(len(children), at + SIBLINGS_SHOWN + 1)
    indent = SPACE * depth
    lines = [indent + FORK + f"… {first} more"] if first else []
    for position in range(first, last):
        child_name, child = children[position]
        is_last = position == len(children) - 1
        line = indent + (LAST if is_last else FORK) + entry(child_name, child)
        lines.append(line + MARK if position == at else line)
    if last < len(children):
        lines.append(indent + LAST + f"… {len(children) - last} more")
    return lines


__all__ = ["located", "record"]

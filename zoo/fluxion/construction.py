"""Knowing whether a module is still being built.

Some assignments are how a class builds itself inside `__init__` and a trap afterwards (a module set as
an attribute of a finished chain silently becomes a child that runs). A class passed to
`track_construction` has its own `__init__` wrapped so that each instance counts how many constructors
are running on it; nested `super().__init__()` calls count once each, so construction ends when the
outermost one returns. Only constructors pay for this, never a forward.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

_DEPTH = "_fluxion_init_depth"
_TRACKED = "__fluxion_tracks_construction__"


def track_construction(cls: type) -> None:
    """Wrap the `__init__` that `cls` itself defines (if any) to count running constructors."""
    init: Callable[..., None] | None = cls.__dict__.get("__init__")
    if init is None or getattr(init, _TRACKED, False):
        return

    @functools.wraps(init)
    def counted(self: object, *args: Any, **kwargs: Any) -> None:
        depth: int = self.__dict__.get(_DEPTH, 0)
        # object.__setattr__: before nn.Module.__init__ runs, torch's __setattr__ cannot be used yet.
        object.__setattr__(self, _DEPTH, depth + 1)
        try:
            init(self, *args, **kwargs)
        finally:
            object.__setattr__(self, _DEPTH, depth)

    setattr(counted, _TRACKED, True)
    setattr(cls, "__init__", counted)  # noqa: B010 (pyright rejects assigning __init__ directly)


def under_construction(instance: object) -> bool:
    """Whether a tracked constructor is running on `instance`."""
    depth: int = instance.__dict__.get(_DEPTH, 0)
    return depth > 0


__all__ = ["track_construction", "under_construction"]

"""Chain-scoped key/value contexts.

Deep layers of a model (a cross-attention several chains down, a skip connection on the other side of
a UNet) need values that the top of the model receives: a timestep embedding, text conditioning, the
residuals of the down path. Instead of threading them through every call, the root chain owns a
`ContextProvider`; `SetContext` writes into it and `UseContext` reads from it while the model runs.
"""

from __future__ import annotations

from collections.abc import Generator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

Context = dict[str, Any]
Contexts = dict[str, Context]


class ContextProvider:
    """A store of named contexts, each a plain dict, with defaults to reset to after a forward."""

    def __init__(self) -> None:
        self.contexts: Contexts = {}

    def set_context(self, name: str, values: Context) -> None:
        """Replace the context `name` with `values`."""
        self.contexts[name] = values

    def update_contexts(self, new: Contexts) -> None:
        """Merge several contexts, key by key."""
        for name, values in new.items():
            self.contexts.setdefault(name, {}).update(values)

    def get_context(self, name: str) -> Context:
        """The context `name`, created empty on first use."""
        return self.contexts.setdefault(name, {})

    def reset(self, defaults: Contexts) -> None:
        """Forget everything set since the last reset, keeping only copies of `defaults`."""
        self.contexts = {name: dict(values) for name, values in defaults.items()}


# A context variable rather than a global list, so threads running different models do not mix.
_active: ContextVar[tuple[ContextProvider, ...]] = ContextVar("zoo_fluxion_active", default=())


@contextmanager
def activate(provider: ContextProvider) -> Generator[bool, None, None]:
    """Make `provider` the one layers read from during a forward.

    Yields True when this call activated it (it is the top-level forward, which must reset the provider
    afterwards), False when it was already active (a nested chain of the same model).
    """
    stack = _active.get()
    if stack and stack[-1] is provider:
        yield False
        return
    token = _active.set((*stack, provider))
    try:
        yield True
    finally:
        _active.reset(token)


def active_provider() -> ContextProvider | None:
    """The provider of the model running now, if any."""
    stack = _active.get()
    return stack[-1] if stack else None


__all__ = ["Context", "ContextProvider", "Contexts", "activate", "active_provider"]

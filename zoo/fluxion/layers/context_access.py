"""Layers that move values through a running model's contexts: store one, or read one back."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from zoo.fluxion.module import ContextModule


class SetContext(ContextModule):
    """Stores its first input in `context[key]` (or hands it to `callback`) and returns its inputs.

    Example:
        >>> import torch, zoo.fluxion as fl
        >>> model = fl.Chain(fl.SetContext("demo", "x"), fl.Multiply(2.0), fl.UseContext("demo", "x"))
        >>> model(torch.ones(1)).tolist()  # the value stored before the multiplication
        [1.0]
    """

    def __init__(self, context: str, key: str, callback: Callable[[Any, Any], None] | None = None) -> None:
        super().__init__()
        self.context, self.key, self.callback = context, key, callback

    def forward(self, *args: Any) -> Any:
        values = self.use_context(self.context)
        if self.callback is None:
            values[self.key] = args[0]
        else:
            self.callback(values[self.key], args[0])
        return args[0] if len(args) == 1 else args

    def extra_repr(self) -> str:
        return f"context={self.context!r}, key={self.key!r}"


class UseContext(ContextModule):
    """Returns `context[key]` of the running model, ignoring its inputs.

    Example:
        >>> import torch, zoo.fluxion as fl
        >>> model = fl.Chain(fl.Sum(fl.Identity(), fl.UseContext("cond", "shift")))
        >>> model.set_context("cond", {"shift": torch.tensor(5.0)})
        >>> model(torch.zeros(1)).tolist()
        [5.0]
    """

    def __init__(self, context: str, key: str) -> None:
        super().__init__()
        self.context, self.key = context, key

    def forward(self, *args: Any) -> Any:
        values = self.use_context(self.context)
        if self.key not in values:
            raise KeyError(f"context {self.context!r} has no {self.key!r}: set it before the forward")
        return values[self.key]

    def extra_repr(self) -> str:
        return f"context={self.context!r}, key={self.key!r}"


__all__ = ["SetContext", "UseContext"]

"""Reading a checkpoint's tensor shapes under one key prefix, with errors that name the full key.

Configs of original single files are derived from shapes; a missing tensor or an unexpected pattern
must be reported with the key a user can look for in their file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TypeVar

from converters.declaration import Shape
from zoo.errors import ConfigError

_V = TypeVar("_V")


class ShapeReader:
    """A component's shapes under one key prefix; errors name the full key."""

    def __init__(self, shapes: Mapping[str, Shape], prefix: str, what: str) -> None:
        self.shapes = shapes
        self.prefix = prefix
        self.what = what

    def __call__(self, name: str) -> Shape:
        key = self.prefix + name
        if key not in self.shapes:
            raise self.fail(name, "missing, and every such checkpoint has it")
        return tuple(self.shapes[key])

    def has(self, name: str) -> bool:
        return self.prefix + name in self.shapes

    def count(self, pattern: str) -> int:
        """How many consecutive indices from 0 the `(\\d+)` in `pattern` takes over the keys."""
        regex = re.compile(re.escape(self.prefix) + pattern)
        indices = sorted({int(m[1]) for key in self.shapes if (m := regex.match(key))})
        if indices != list(range(len(indices))):
            missing = next(i for i in range(len(indices) + 1) if i not in indices)
            where = pattern.replace(r"(\d+)", str(missing)).replace("\\", "")
            raise self.fail(where, f"missing, but indices {indices} are present")
        return len(indices)

    def fail(self, name: str, why: str) -> ConfigError:
        return ConfigError(
            f"unsupported {self.what} in the single file: {why}",
            tensor=self.prefix + name,
            hint="this checkpoint is not one this conversion supports",
        )


def owned(values: Mapping[str, _V], prefix: str) -> dict[str, _V]:
    return {key: value for key, value in values.items() if key.startswith(prefix)}


__all__ = ["ShapeReader", "owned"]

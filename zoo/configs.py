"""Model configs as plain data: frozen dataclasses to and from JSON-ready dicts.

Converted outputs carry their model's config in `config.json`, so an output folder describes itself
and `zoo.load` can rebuild the model without knowing where it came from.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import types
import typing
from typing import Any, TypeVar

from zoo.errors import ConfigError

C = TypeVar("C")

# Only classes from our own model packages may be named by a config file.
_ALLOWED_PREFIX = "zoo.foundationals."


def config_to_dict(config: object) -> dict[str, Any]:
    """A dataclass config as a JSON-ready dict (tuples become lists)."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"{type(config).__name__} is not a dataclass instance")
    return json.loads(json.dumps(dataclasses.asdict(config)))


def config_from_dict(cls: type[C], data: dict[str, Any]) -> C:
    """Rebuild a dataclass config, turning lists back into tuples and nested dicts into dataclasses."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls.__name__} is not a dataclass")
    hints = typing.get_type_hints(cls)
    names = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{cls.__name__} has no field(s) {unknown}")
    return cls(**{key: _coerce(hints[key], value) for key, value in data.items()})


def _coerce(hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            if option is type(None) and value is None:
                return None
        options = [option for option in typing.get_args(hint) if option is not type(None)]
        return _coerce(options[0], value) if len(options) == 1 else _best_effort(value)
    if origin is tuple and isinstance(value, list):
        args = typing.get_args(hint)
        inner = args[0] if len(args) == 2 and args[1] is Ellipsis else None
        return tuple(_coerce(inner, item) if inner is not None else _best_effort(item) for item in value)
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return config_from_dict(hint, value)  # pyright: ignore[reportArgumentType, reportUnknownVariableType]
    return value


def _best_effort(value: Any) -> Any:
    return tuple(_best_effort(item) for item in value) if isinstance(value, list) else value


def config_digest(config: object) -> str:
    """sha256 of the config's canonical JSON."""
    canonical = json.dumps(config_to_dict(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def qualified_name(cls: type) -> str:
    """`module.ClassName` of a class."""
    return f"{cls.__module__}.{cls.__qualname__}"


def import_model_class(name: str) -> type:
    """The class a config file names; only classes under `zoo.foundationals` are allowed."""
    if not name.startswith(_ALLOWED_PREFIX):
        raise ConfigError(f"refusing to build {name!r}: only zoo.foundationals models can be loaded")
    module_name, _, class_name = name.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as error:
        raise ConfigError(f"unknown model class {name!r}: {error}") from error


__all__ = [
    "config_digest",
    "config_from_dict",
    "config_to_dict",
    "import_model_class",
    "qualified_name",
]

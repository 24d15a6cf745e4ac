"""An on-disk cache of what a single file's header teaches (`SingleFileMap`: configs, recipes, ignored keys).

Learning the map records the upstream library's conversion on meta and builds the upstream model to
check it: for the SDXL UNet, importing diffusers and running both takes 5-8 s, more than streaming the
5 GB file. The map depends only on the conversion, the file's header (every key, shape and dtype), the
library versions and our code, so the cache key hashes all four, as the key-map cache does; any change
learns it again. Only maps that passed every check are stored, and the tensors are still read from the
file and checked while they stream.

Entries are JSON, not pickles: a recipe's operations are stored by name and looked up again only on
`torch`, `torch.Tensor` and `torch.nn.functional`, so a cache file cannot run code. A map holding a value
JSON cannot say is simply not cached.

Location: `$ZOO_CACHE/single_file_maps` (see `converters._convert.keymap_cache`); `ZOO_NO_CACHE=1`
turns it off.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional

from converters._convert.cache_location import cache_dir
from converters._convert.keymap_cache import code_digest, library_versions
from converters._single_file.recording import Call, Leaf
from converters.declaration import Shape
from zoo.files import write_text_atomic

KIND = "single_file_maps"
_OWNERS: dict[str, Any] = {"torch": torch, "torch.Tensor": torch.Tensor, "torch.nn.functional": functional}


class Unencodable(Exception):
    """A value of a map that this cache's JSON cannot hold."""


def entry_key(conversion: str, shapes: Mapping[str, Shape], dtypes: Mapping[str, torch.dtype]) -> str:
    """The entry name for one conversion of one file header with this code and these libraries."""
    header = sorted((key, list(shape), str(dtypes[key])) for key, shape in shapes.items())
    identity = {
        "conversion": conversion,
        "header": header,
        "code": code_digest(),
        "versions": library_versions(),
    }
    return hashlib.sha256(json.dumps(identity, separators=(",", ":")).encode()).hexdigest()


def load(key: str) -> dict[str, Any] | None:
    """A stored map's parts (`configs`, `recipes` as (recipe, shape, dtype), `ignored`), or None."""
    folder = cache_dir(KIND)
    if folder is None:
        return None
    try:
        return decode(json.loads((folder / f"{key}.json").read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, Unencodable):
        return None


def store(key: str, parts: Mapping[str, Any]) -> None:
    """Save a map's parts atomically; one JSON cannot hold, or a cache that cannot be written, is skipped."""
    folder = cache_dir(KIND)
    if folder is None:
        return
    try:
        text = json.dumps(encode(parts), separators=(",", ":"))
        folder.mkdir(parents=True, exist_ok=True)
        write_text_atomic(folder / f"{key}.json", text)
    except (OSError, Unencodable):
        return


# -- values <-> JSON --------------------------------------------------------------------------------


def encode(value: Any) -> Any:
    """A map's value as JSON-able data, every type kept (tuples stay tuples)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Leaf):
        return {"leaf": value.key}
    if isinstance(value, Call):
        return {
            "call": _function_name(value.func),
            "args": encode(value.args),
            "kwargs": encode(dict(value.kwargs)),
            "index": value.index,
        }
    return _encode_container(value)


def _encode_container(value: Any) -> Any:
    if isinstance(value, list):
        return [encode(item) for item in value]  # pyright: ignore[reportUnknownVariableType]
    if isinstance(value, torch.Size):
        return {"size": list(value)}
    if isinstance(value, tuple):
        return {"tuple": [encode(item) for item in value]}  # pyright: ignore[reportUnknownVariableType]
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):  # pyright: ignore[reportUnknownVariableType]
        return {"dict": {key: encode(item) for key, item in value.items()}}  # pyright: ignore[reportUnknownVariableType]
    if isinstance(value, slice):
        return {"slice": [encode(value.start), encode(value.stop), encode(value.step)]}
    if value is Ellipsis:
        return {"ellipsis": None}
    if isinstance(value, torch.dtype):
        return {"dtype": str(value).removeprefix("torch.")}
    raise Unencodable(f"{type(value).__name__} {value!r}")


_DECODERS: dict[str, Callable[[Any], Any]] = {
    "leaf": lambda key: Leaf(str(key)),
    "size": lambda items: torch.Size(items),
    "tuple": lambda items: tuple(decode(item) for item in items),
    "dict": lambda items: {key: decode(item) for key, item in items.items()},
    "slice": lambda parts: slice(*(decode(part) for part in parts)),
    "ellipsis": lambda _: Ellipsis,
    "dtype": lambda name: _dtype(name),
}


def decode(data: Any) -> Any:
    """The value `encode` gave `data` for."""
    if isinstance(data, list):
        return [decode(item) for item in data]  # pyright: ignore[reportUnknownVariableType]
    if not isinstance(data, dict):
        return data
    if "call" in data:
        return Call(_function(data["call"]), decode(data["args"]), decode(data["kwargs"]), data["index"])
    (kind, payload), *rest = data.items()  # pyright: ignore[reportUnknownVariableType]
    if rest or kind not in _DECODERS:
        raise Unencodable(f"not an encoded value: {sorted(data)}")  # pyright: ignore[reportUnknownArgumentType]
    return _DECODERS[kind](payload)


def _function_name(func: Callable[..., Any]) -> list[str]:
    name = getattr(func, "__name__", None)
    for owner_name, owner in _OWNERS.items():
        if isinstance(name, str) and getattr(owner, name, None) is func:
            return [owner_name, name]
    raise Unencodable(f"operation {func!r} is not a function of torch, torch.Tensor or torch.nn.functional")


def _function(parts: list[str]) -> Callable[..., Any]:
    owner_name, name = parts
    return getattr(_OWNERS[owner_name], name)


def _dtype(name: str) -> torch.dtype:
    dtype = getattr(torch, name)
    if not isinstance(dtype, torch.dtype):
        raise Unencodable(f"not a dtype: {name}")
    return dtype


def cache_file(key: str) -> Path | None:
    """Where an entry is (or would be) stored; None when caching is off."""
    folder = cache_dir(KIND)
    return None if folder is None else folder / f"{key}.json"


__all__ = ["Unencodable", "cache_file", "decode", "encode", "entry_key", "load", "store"]

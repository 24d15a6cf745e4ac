"""Where two files first differ: a tensor, a metadata key or a JSON key when the format says, else a byte."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from converters._checkpoints import read_header
from zoo.errors import FormatError

CHUNK = 1 << 20


def first_difference(a: Path, b: Path) -> tuple[str, str | None]:
    """Where two files first differ: a tensor, a metadata key or a JSON key when the format says."""
    if a.suffix == ".safetensors":
        return _safetensors_difference(a, b)
    if a.suffix == ".json":
        return _json_difference(a, b)
    return _byte_difference(a, b), None


def _safetensors_difference(a: Path, b: Path) -> tuple[str, str | None]:
    try:
        left, right = read_header(a), read_header(b)
    except FormatError as error:
        return f"header unreadable: {error.one_line()}", None
    for key in sorted(set(left.metadata) | set(right.metadata)):
        if left.metadata.get(key) != right.metadata.get(key):
            return f"metadata {key!r}: {left.metadata.get(key)!r} vs {right.metadata.get(key)!r}", None
    for name in sorted(set(left.entries) ^ set(right.entries)):
        return f"tensor {name!r} is in only one of the files", name
    for name, entry in sorted(left.entries.items(), key=lambda item: item[1].begin):
        other = right.entries[name]
        if (entry.dtype, entry.shape) != (other.dtype, other.shape):
            return (
                f"tensor {name!r}: {entry.dtype}{list(entry.shape)} vs {other.dtype}{list(other.shape)}",
                name,
            )
        if not _same_bytes(a, left.data_start + entry.begin, b, right.data_start + other.begin, entry.nbytes):
            return f"tensor {name!r}: its values differ", name
    return "the headers are laid out differently", None


def _same_bytes(a: Path, start_a: int, b: Path, start_b: int, count: int) -> bool:
    with a.open("rb") as left, b.open("rb") as right:
        left.seek(start_a)
        right.seek(start_b)
        while count > 0:
            size = min(CHUNK, count)
            if left.read(size) != right.read(size):
                return False
            count -= size
    return True


def _json_difference(a: Path, b: Path) -> tuple[str, str | None]:
    try:
        left, right = json.loads(a.read_text(encoding="utf-8")), json.loads(b.read_text(encoding="utf-8"))
    except ValueError:
        return _byte_difference(a, b), None
    path = _json_path(left, right, "")
    return (f"key {path or '(top)'} differs", None) if path is not None else ("formatting differs", None)


def _json_path(left: Any, right: Any, at: str) -> str | None:
    if isinstance(left, dict) and isinstance(right, dict):
        for key in sorted(set(left) | set(right)):
            found = _json_path(left.get(key), right.get(key), f"{at}.{key}" if at else str(key))
            if found is not None:
                return found
        return None
    return None if left == right else at


def _byte_difference(a: Path, b: Path) -> str:
    offset = 0
    with a.open("rb") as left, b.open("rb") as right:
        while True:
            x, y = left.read(CHUNK), right.read(CHUNK)
            if x != y:
                index = next(
                    (i for i, (p, q) in enumerate(zip(x, y, strict=False)) if p != q), min(len(x), len(y))
                )
                return f"first differing byte at offset {offset + index}"
            if not x:
                return "identical"
            offset += len(x)


__all__ = ["first_difference"]

"""`zoo inspect FILE`: what a checkpoint holds and what it is, read without loading its tensors."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field, replace
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from converters import registry
from converters._checkpoints import open_checkpoint
from converters._detect import Detection, detect_checkpoint
from zoo.formats import WEIGHTS_NAME
from zoo.hub import sha256_file


@dataclass(frozen=True)
class FileReport:
    """What `zoo inspect` tells about a checkpoint."""

    path: str
    format: str
    tensors: int
    params: int
    bytes: int
    sha256: str
    dtypes: dict[str, int]
    metadata: dict[str, str]
    kind: str | None  # what the tensors are, in words (None: nothing zoo knows)
    family: str | None  # the family they belong to, when one is declared
    conversion: str | None  # the registry name that converts them, when there is one
    shapes: dict[str, list[int]] = field(default_factory=dict)
    declared: str | None = None  # the declared upstream file it is, by name (and sha256 once pinned)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def inspect_file(path: Path, pattern: str | None = None) -> FileReport:
    """Format, counts, dtypes, metadata, sha256 (streamed) and what the tensors are, without loading them.

    `path` is a checkpoint file, a folder holding a shard index, or a `zoo convert` output folder.
    """
    if path.is_dir() and (path / WEIGHTS_NAME).is_file():
        path = path / WEIGHTS_NAME
    with open_checkpoint(path) as reader:
        shapes = {key: reader.shape(key) for key in reader.keys()}
        dtypes = Counter(str(reader.dtype(key)).removeprefix("torch.") for key in shapes)
        detection = detect_checkpoint(shapes, reader.metadata) or _UNKNOWN
        report = FileReport(
            path=str(path),
            format=reader.format,
            tensors=len(shapes),
            params=sum(math.prod(shape) for shape in shapes.values()),
            bytes=_size(path),
            sha256=sha256_file(path) if path.is_file() else "",
            dtypes=dict(sorted(dtypes.items())),
            metadata=dict(sorted(reader.metadata.items())),
            kind=detection.description or None,
            family=detection.family,
            conversion=detection.conversion,
            shapes={k: list(v) for k, v in shapes.items() if pattern and fnmatch(k, pattern)},
        )
    if path.is_file() and detection.family is not None:
        report = replace(report, declared=_declared(path, report.sha256, detection.family))
    return report


def _declared(path: Path, sha256: str, family: str) -> str | None:
    """Which of the family's declared based files this is: the same name, and the same bytes once pinned."""
    for based in registry.families()[family].based_files:
        pin = based.pinned
        if Path(pin.filename).name == path.name and pin.sha256 in (None, sha256):
            pinned = "" if pin.sha256 else " (matched by name: its sha256 is not pinned yet)"
            return f"{pin.repo}/{pin.filename}: {based.name}, base {based.base}{pinned}"
    return None


_UNKNOWN = Detection("")


def _size(path: Path) -> int:
    return (
        sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        if path.is_dir()
        else path.stat().st_size
    )


__all__ = ["FileReport", "inspect_file"]

"""Files named by a manifest entry against what the entry says: present, size, sha256 (streamed)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from zoo.hub import sha256_file
from zoo.manifest.document import MANIFEST_NAME, Manifest, relative, source_label

# Files that sit next to top-level outputs in a published repo (or its snapshot) without being outputs.
COMPANIONS = frozenset({MANIFEST_NAME, "README.md", ".gitattributes"})
Status = Literal["ok", "mismatch", "missing", "unknown", "extra"]


@dataclass(frozen=True)
class FileCheck:
    """One file named by a manifest entry (or found next to its outputs) against what the entry says."""

    entry: str
    role: Literal["source", "output"]
    file: str  # as the manifest names it
    path: str | None  # where it was looked for
    status: Status
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def check_files(
    manifest: Manifest,
    name: str,
    out: Path | None = None,
    *,
    outputs: bool = True,
    sources: bool = True,
    extras: bool = True,
) -> list[FileCheck]:
    """Files of an entry against the manifest, by size then sha256 (streamed); absent ones are `missing`.

    Args:
        manifest: The manifest holding the entry.
        name: The entry.
        out: Where a declared manifest's outputs are (an output manifest's are next to it).
        outputs: Check the outputs.
        sources: Check the sources (local ones next to the manifest, Hub ones in the HF cache).
        extras: Report files next to the outputs that the entry does not name.
    """
    entry = manifest.entries[name]
    root = manifest.output_root(out)
    checks: list[FileCheck] = []
    if outputs:
        checks += [_check(name, "output", o["file"], root / o["file"], o) for o in entry["outputs"]]
    if sources:
        for source in entry["sources"]:
            checks.append(_check(name, "source", source_label(source), manifest.source_path(source), source))
    if extras:
        named = {os.path.abspath(root / o["file"]) for e in manifest.entries.values() for o in e["outputs"]}
        checks += _extras(name, root, entry, named)
    return checks


def _check(
    name: str, role: Literal["source", "output"], label: str, path: Path | None, record: Mapping[str, Any]
) -> FileCheck:
    where = str(path) if path is not None else None
    if path is None or not path.is_file():
        why = "not present locally" if path is not None else record["unknown"].get("revision", "no location")
        return FileCheck(name, role, label, where, "missing", why)
    size = path.stat().st_size
    if record.get("size") is not None and size != record["size"]:
        return FileCheck(
            name, role, label, where, "mismatch", f"size {size} bytes, manifest says {record['size']}"
        )
    if record.get("sha256") is None:
        return FileCheck(
            name, role, label, where, "unknown", record["unknown"].get("sha256", "no sha256 recorded")
        )
    actual = sha256_file(path)
    if actual != record["sha256"]:
        return FileCheck(
            name, role, label, where, "mismatch", f"sha256 {actual}, manifest says {record['sha256']}"
        )
    return FileCheck(name, role, label, where, "ok", f"sha256 {actual}")


def _extras(name: str, root: Path, entry: Mapping[str, Any], named: set[str]) -> list[FileCheck]:
    """Files beside the entry's outputs that no entry of the manifest names (LoRAs share one folder)."""
    folders = {Path(os.path.abspath(root / output["file"])).parent for output in entry["outputs"]}
    found = sorted(p for folder in folders if folder.is_dir() for p in folder.iterdir() if p.is_file())
    top = os.path.abspath(root)
    return [
        FileCheck(name, "output", relative(p, root), str(p), "extra", "not named by the manifest")
        for p in found
        if os.path.abspath(p) not in named and not (str(p.parent) == top and p.name in COMPANIONS)
    ]


__all__ = ["COMPANIONS", "FileCheck", "Status", "check_files"]

"""Manifest files: read (validated), write (validated, atomic, canonical), update under a lock, find entries.

One schema (`zoo.manifest.schema`), two kinds:
- `output`: `OUT/manifest.json`, written by `zoo convert`: the facts of real runs into that folder.
- `declared`: `manifests/<family>.json` in the repository, generated from the declarations by
  `ci/write_manifests.py`: pinned sources, and output facts only once a real run has been merged in.

A model conversion entry (no `type`, or `"type": "conversion"`) is keyed by its registry name; a LoRA
entry (`"type": "lora"`, output manifests only) by `lora/<file stem>`, which no registry name can be, and
a Control-LoRA entry (`"type": "control_lora"`, output manifests only) by `control_lora/<file stem>`.
This package knows files, hashes and the Hub cache, not models: what goes into an entry is decided by
the converters that record it.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo import __version__
from zoo.errors import ConfigError, FormatError
from zoo.files import write_text_atomic
from zoo.hub import cached_path
from zoo.manifest.schema import LORA_PREFIX, MANIFEST_VERSION, validate_manifest

MANIFEST_NAME = "manifest.json"
PARITY_NOT_MEASURED = "not measured yet: run `zoo verify {name} --parity --record`"


@dataclass(frozen=True)
class Manifest:
    """A manifest file and its (validated) content."""

    path: Path
    data: dict[str, Any]

    @property
    def kind(self) -> str:
        return self.data["kind"]

    @property
    def entries(self) -> dict[str, dict[str, Any]]:
        return self.data["conversions"]

    @property
    def folder(self) -> Path:
        return self.path.parent

    def output_root(self, out: Path | None = None) -> Path:
        """Where the outputs' `file` paths start: the manifest's folder, or `out` for a declared one."""
        return self.folder if self.kind == "output" else (out or Path("out"))

    def source_path(self, source: Mapping[str, Any]) -> Path | None:
        """Where a source is expected locally: next to the manifest, or in the HF cache at its revision."""
        if source["kind"] == "local":
            return self.folder / source["path"]
        if source.get("file") is None or source.get("revision") is None:
            return None
        return cached_path(source["repo"], source["file"], source["revision"])


def new_manifest(kind: str) -> dict[str, Any]:
    return {"manifest_version": MANIFEST_VERSION, "kind": kind, "zoo_version": __version__, "conversions": {}}


def read_manifest(path: Path) -> Manifest:
    """Read and validate a manifest; any schema problem is a FormatError naming the first few."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise FormatError(
            "no manifest here", file=path, hint="run `zoo convert NAME --out DIR` first"
        ) from error
    except ValueError as error:
        raise FormatError(f"manifest is not valid JSON: {error}", file=path) from error
    problems = validate_manifest(data)
    if problems:
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        raise FormatError(
            f"manifest does not follow the schema: {'; '.join(problems[:3])}{more}",
            file=path,
            hint="fix the fields named, or convert into a fresh --out",
        )
    return Manifest(Path(path), data)


def write_manifest(path: Path, data: dict[str, Any], *, durable: bool = False) -> None:
    """Validate, then write atomically (sorted keys, 2-space indent, trailing newline); fsynced if `durable`."""
    problems = validate_manifest(data)
    if problems:
        raise FormatError(f"refusing to write an invalid manifest: {'; '.join(problems[:3])}", file=path)
    write_text_atomic(path, dumps(data), durable=durable)


def dumps(data: Mapping[str, Any]) -> str:
    """The canonical text of a manifest."""
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


@contextmanager
def locked(folder: Path) -> Iterator[None]:
    """An exclusive lock on a folder, so concurrent runs into one OUT never lose each other's entries."""
    handle = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)


def update_entries(
    path: Path,
    make: Callable[[Mapping[str, dict[str, Any]]], Mapping[str, dict[str, Any]]],
    kind: str = "output",
    *,
    durable: bool = False,
) -> None:
    """Add or replace entries of the manifest at `path` (created when missing), under a lock.

    `make` receives the current entries and returns the new or replaced ones; `durable` fsyncs the result.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with locked(path.parent):
        data = read_manifest(path).data if path.exists() else new_manifest(kind)
        data["conversions"].update(make(data["conversions"]))
        data["zoo_version"] = __version__
        write_manifest(path, data, durable=durable)


def relative(path: Path, root: Path) -> str:
    """`path` relative to `root`, POSIX style (symlinks are not resolved: cache paths stay readable)."""
    return Path(os.path.relpath(os.path.abspath(path), os.path.abspath(root))).as_posix()


def recipe_revision(entry: Mapping[str, Any]) -> str | None:
    """The one revision a Hub-sourced entry's sources were read at (None when they differ or are unknown)."""
    revisions = {source.get("revision") for source in entry["sources"] if source["kind"] == "hub"}
    return revisions.pop() if len(revisions) == 1 else None


def weights_output(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The entry's weights output."""
    return next(output for output in entry["outputs"] if output["role"] == "weights")


def entry_type(entry: Mapping[str, Any]) -> str:
    """`conversion` (a model, the default when an entry says nothing), `lora` or `control_lora`."""
    return entry.get("type", "conversion")


def is_lora(entry: Mapping[str, Any]) -> bool:
    return entry_type(entry) == "lora"


def lora_entry_name(source: Path) -> str:
    """A LoRA's entry name: `lora/<file stem>` (the output is `<file stem>.safetensors`, so one per file)."""
    return f"{LORA_PREFIX}{Path(source).stem}"


def matches(name: str, query: str) -> bool:
    """`sdxl` matches every `sdxl.*` entry, `lora` every `lora/*` entry; `sdxl.unet` only itself."""
    return name == query or name.startswith(query + ".") or name.startswith(query.rstrip("/") + "/")


def select(manifest: Manifest, queries: Sequence[str] = ()) -> list[str]:
    """Entry names matching any query (all entries when there is none); an unmatched query is an error."""
    names = sorted(manifest.entries)
    if not queries:
        return names
    chosen: list[str] = []
    for query in queries:
        found = [name for name in names if matches(name, query)]
        if not found:
            kind = query.partition("/")[0] if "/" in query or query == LORA_PREFIX.rstrip("/") else None
            command = f"{kind.replace('_', '-')} FILE --base BASE" if kind else query
            raise ConfigError(
                f"no entry {query!r} in the manifest (it has: {', '.join(names) or 'none'})",
                file=manifest.path,
                hint=f"run `zoo convert {command} --out {manifest.folder}` first, or pass --out",
            )
        chosen += [name for name in found if name not in chosen]
    return chosen


def source_label(source: Mapping[str, Any]) -> str:
    """How messages name a source: its local path, or `repo@revision/file`."""
    if source["kind"] == "local":
        return source["path"]
    return f"{source['repo']}@{source.get('revision') or '?'}/{source.get('file') or '?'}"


__all__ = [
    "MANIFEST_NAME",
    "PARITY_NOT_MEASURED",
    "Manifest",
    "dumps",
    "entry_type",
    "is_lora",
    "locked",
    "lora_entry_name",
    "matches",
    "new_manifest",
    "read_manifest",
    "recipe_revision",
    "relative",
    "select",
    "source_label",
    "update_entries",
    "weights_output",
    "write_manifest",
]

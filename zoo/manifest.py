"""Manifests: what a conversion read and wrote, with hashes, so an output folder can be verified alone.

One schema (version 1), two kinds:
- `output`: `OUT/manifest.json`, written by `zoo convert`: the facts of real runs into that folder.
- `declared`: `manifests/<family>.json` in the repository, generated from the declarations by
  `ci/write_manifests.py`: pinned sources, and output facts only once a real run has been merged in.

Entries come in two types. A model conversion (no `type` field, or `"type": "conversion"`: every
manifest written before LoRA entries existed is one of these, unchanged) is keyed by its registry
name. A LoRA conversion (`"type": "lora"`, output manifests only) is keyed `lora/<file stem>`, which
no registry name can be: it records the LoRA file, the base it was placed on, the scale and the file
written, so `zoo verify` can check and redo it.

A value that is not known is `null`, and the object holding it says why in its `unknown` map; nothing
is guessed. The module knows files, hashes and the Hub cache, not models: conversions and their results
reach it through the small protocols below.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from zoo import __version__
from zoo.errors import ConfigError, FormatError, HashMismatchError
from zoo.files import write_text_atomic
from zoo.hub import COMMIT, SHA256, Pin, cached_file_origin, cached_path, sha256_file
from zoo.loading import CONFIG_NAME, WEIGHTS_NAME

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
KINDS = ("output", "declared")
# Files that sit next to top-level outputs in a published repo (or its snapshot) without being outputs.
COMPANIONS = frozenset({MANIFEST_NAME, "README.md", ".gitattributes"})
PARITY_NOT_MEASURED = "not measured yet: run `zoo verify {name} --parity --record`"
ENTRY_TYPES = ("conversion", "lora")
LORA_PREFIX = "lora/"
LORA_PARITY = (
    "LoRA parity is measured by the test suite against peft/diffusers; zoo verify does not re-measure it"
)
LORA_BASE_KINDS = ("family", "folder", "memory")
Status = Literal["ok", "mismatch", "missing", "unknown", "extra"]


# -- what the manifest reads from conversions (structural: no import of converters) -----------------


class Produced(Protocol):
    """One converted component (`converters.pipeline.ComponentResult`)."""

    @property
    def name(self) -> str: ...
    @property
    def folder(self) -> Path: ...
    @property
    def dtype(self) -> str: ...
    @property
    def tensors(self) -> int: ...
    @property
    def params(self) -> int: ...
    @property
    def bytes(self) -> int: ...
    @property
    def sha256(self) -> str | None: ...
    @property
    def keymap_digest(self) -> str: ...
    @property
    def source_files(self) -> list[Path]: ...
    @property
    def dry_run(self) -> bool: ...


class ProducedLora(Protocol):
    """One converted LoRA file (`converters.lora.LoraConversionResult`)."""

    @property
    def source(self) -> Path: ...
    @property
    def source_sha256(self) -> str: ...
    @property
    def source_files(self) -> list[Path]: ...
    @property
    def format(self) -> str: ...
    @property
    def ranks(self) -> list[int]: ...
    @property
    def alpha(self) -> str: ...
    @property
    def family(self) -> str: ...
    @property
    def base_kind(self) -> str: ...
    @property
    def base_source(self) -> str | None: ...
    @property
    def base_models(self) -> list[dict[str, str]]: ...
    @property
    def scale(self) -> float: ...
    @property
    def output(self) -> Path: ...
    @property
    def sha256(self) -> str | None: ...
    @property
    def bytes(self) -> int: ...
    @property
    def dtype(self) -> str: ...
    @property
    def tensors(self) -> int: ...
    @property
    def params(self) -> int: ...
    @property
    def dry_run(self) -> bool: ...


class DeclaredPin(Pin, Protocol):
    """A pinned upstream file as declared (`converters.declaration.PinnedFile`): a Hub pin plus its licence."""

    @property
    def license(self) -> str | None: ...
    @property
    def unknown(self) -> str | None: ...


class DeclaredPart(Protocol):
    @property
    def pinned(self) -> DeclaredPin | None: ...


class Declared(Protocol):
    """A declared conversion (`converters.declaration.Conversion`)."""

    @property
    def name(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def hub_repo(self) -> str: ...
    @property
    def license(self) -> str: ...
    @property
    def parts(self) -> Sequence[DeclaredPart]: ...


# -- reading and writing ----------------------------------------------------------------------------


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


def write_manifest(path: Path, data: dict[str, Any]) -> None:
    """Validate, then write atomically (sorted keys, 2-space indent, trailing newline)."""
    problems = validate_manifest(data)
    if problems:
        raise FormatError(f"refusing to write an invalid manifest: {'; '.join(problems[:3])}", file=path)
    write_text_atomic(path, dumps(data))


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
) -> None:
    """Add or replace entries of the manifest at `path` (created when missing), under a lock.

    `make` receives the current entries and returns the new or replaced ones.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with locked(path.parent):
        data = read_manifest(path).data if path.exists() else new_manifest(kind)
        data["conversions"].update(make(data["conversions"]))
        data["zoo_version"] = __version__
        write_manifest(path, data)


# -- recording a `zoo convert` run ------------------------------------------------------------------


def record_convert_run(
    out: Path,
    results: Sequence[Produced],
    conversions: Sequence[Declared],
    *,
    source: str | Path | None,
    dtype: object | None,
) -> Path | None:
    """Write or update `OUT/manifest.json` with what a `zoo convert` run read and wrote.

    Dry-run results are skipped (nothing was written, so there is nothing to record).

    Args:
        out: The output folder (`--out`).
        results: What the run produced, one per component.
        conversions: The declarations those components came from.
        source: `--source` as given (a path or a repo id), the synthetic folder, or None for the
            declared Hub repository.
        dtype: `--dtype` as given (a torch dtype), or None when the source's dtypes were kept.

    Returns:
        The manifest's path, or None when nothing was recorded.
    """
    produced = [result for result in results if not result.dry_run]
    if not produced:
        return None
    declared = {conversion.name: conversion for conversion in conversions}
    path = out / MANIFEST_NAME

    def make(previous: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {
            r.name: output_entry(r, declared[r.name], out, source, dtype, previous.get(r.name))
            for r in produced
        }

    update_entries(path, make)
    return path


def output_entry(
    result: Produced,
    conversion: Declared,
    root: Path,
    source: str | Path | None,
    dtype: object | None,
    previous: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest entry of one converted component (output paths relative to `root`)."""
    config = json.loads((result.folder / CONFIG_NAME).read_text(encoding="utf-8"))
    sources = [source_record(Path(path), conversion, root) for path in result.source_files]
    weights = {
        "file": relative(result.folder / WEIGHTS_NAME, root),
        "role": "weights",
        "sha256": result.sha256,
        "size": result.bytes,
        "dtype": result.dtype,
        "num_tensors": result.tensors,
        "num_params": result.params,
        "unknown": {},
    }
    outputs = [weights, file_record(result.folder / CONFIG_NAME, root, "config")]
    license, license_reason = entry_license(sources)
    parity = _kept_parity(previous, weights, sources)
    return {
        "name": result.name,
        "description": conversion.description,
        "license": license,
        "target": target_record(config),
        "keymap_sha256": result.keymap_digest,
        "sources": sources,
        "outputs": outputs,
        "convert": _recipe(conversion, source, dtype, root),
        "parity": parity,
        "zoo_version": __version__,
        "unknown": _reasons(
            license=license_reason, parity=None if parity else PARITY_NOT_MEASURED.format(name=result.name)
        ),
    }


def target_record(output_config: Mapping[str, Any]) -> dict[str, Any]:
    """Our model: class, config and the config's digest, from an output's `config.json` content."""
    return {
        "model_class": output_config["model_class"],
        "config_class": output_config["config_class"],
        "config": output_config["config"],
        "config_sha256": config_sha256(output_config["config"]),
    }


def config_sha256(config: Mapping[str, Any]) -> str:
    """sha256 of a config's canonical JSON (the same digest as `zoo.configs.config_digest`)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def source_record(path: Path, conversion: Declared, root: Path) -> dict[str, Any]:
    """A source file: its Hub origin when it sits in the HF cache, else its path relative to `root`."""
    sha256, size = sha256_file(path), path.stat().st_size
    role = "config" if path.name == CONFIG_NAME else "weights"
    origin = cached_file_origin(path)
    if origin is None:
        why = f"a local file: its licence is not known (the declared upstream {conversion.hub_repo} is {conversion.license})"
        return {
            "kind": "local",
            "role": role,
            "path": relative(path, root),
            "sha256": sha256,
            "size": size,
            "license": None,
            "unknown": {"license": why},
        }
    _check_pin(conversion, origin.repo, origin.filename, origin.revision, sha256, path)
    license, why = hub_license(conversion, origin.repo)
    return {
        "kind": "hub",
        "role": role,
        "repo": origin.repo,
        "file": origin.filename,
        "revision": origin.revision,
        "sha256": sha256,
        "size": size,
        "license": license,
        "unknown": _reasons(license=why),
    }


def hub_license(conversion: Declared, repo: str) -> tuple[str | None, str | None]:
    """The licence of a Hub repo's files as the declaration states it, or None and why not."""
    for part in conversion.parts:
        if part.pinned is not None and part.pinned.repo == repo and part.pinned.license:
            return part.pinned.license, None
    if repo == conversion.hub_repo:
        return conversion.license, None
    return None, f"{repo} is not the declared upstream ({conversion.hub_repo}): its licence is not recorded"


def _check_pin(conversion: Declared, repo: str, file: str, revision: str, sha256: str, path: Path) -> None:
    for part in conversion.parts:
        pin = part.pinned
        if pin and (pin.repo, pin.filename, pin.revision) == (repo, file, revision) and pin.sha256:
            if pin.sha256 != sha256:
                raise HashMismatchError(
                    f"sha256 mismatch: pinned {pin.sha256}, got {sha256}", file=f"{repo}@{revision}/{file}"
                )


def entry_license(sources: Sequence[Mapping[str, Any]]) -> tuple[str | None, str | None]:
    """The licence an output inherits: its sources' one licence, else None and why."""
    for source in sources:
        if source["license"] is None:
            return None, f"source {source.get('file') or source.get('path')}: {source['unknown']['license']}"
    licenses = sorted({source["license"] for source in sources})
    if len(licenses) != 1:
        return None, f"the sources carry different licences ({', '.join(licenses)})"
    return licenses[0], None


def file_record(path: Path, root: Path, role: str) -> dict[str, Any]:
    return {
        "file": relative(path, root),
        "role": role,
        "sha256": sha256_file(path),
        "size": path.stat().st_size,
        "unknown": {},
    }


def relative(path: Path, root: Path) -> str:
    """`path` relative to `root`, POSIX style (symlinks are not resolved: cache paths stay readable)."""
    return Path(os.path.relpath(os.path.abspath(path), os.path.abspath(root))).as_posix()


def _recipe(
    conversion: Declared, source: str | Path | None, dtype: object | None, root: Path
) -> dict[str, Any]:
    """How to run this conversion again: the source as it was given (a path or a repo id) and the dtype."""
    dtype_name = "keep" if dtype is None else str(dtype).removeprefix("torch.")
    if source is not None and Path(source).exists():
        return {"source_kind": "local", "source": relative(Path(source), root), "dtype": dtype_name}
    repo = conversion.hub_repo if source is None else str(source)
    return {"source_kind": "hub", "source": repo, "dtype": dtype_name}


def _kept_parity(
    previous: Mapping[str, Any] | None, weights: Mapping[str, Any], sources: Sequence[Mapping[str, Any]]
) -> dict[str, Any] | None:
    """A recorded parity stays valid only for the very same output bytes from the very same sources."""
    if not previous or not previous.get("parity"):
        return None
    same_sources = [s["sha256"] for s in previous["sources"]] == [s["sha256"] for s in sources]
    same_output = previous["parity"]["output_sha256"] == weights["sha256"]
    return previous["parity"] if same_sources and same_output else None


def _reasons(**reasons: str | None) -> dict[str, str]:
    return {field: reason for field, reason in reasons.items() if reason is not None}


def recipe_revision(entry: Mapping[str, Any]) -> str | None:
    """The one revision a Hub-sourced entry's sources were read at (None when they differ or are unknown)."""
    revisions = {source.get("revision") for source in entry["sources"] if source["kind"] == "hub"}
    return revisions.pop() if len(revisions) == 1 else None


def weights_output(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The entry's weights output."""
    return next(output for output in entry["outputs"] if output["role"] == "weights")


def entry_type(entry: Mapping[str, Any]) -> str:
    """`conversion` (a model, the default when an entry says nothing) or `lora`."""
    return entry.get("type", "conversion")


def is_lora(entry: Mapping[str, Any]) -> bool:
    return entry_type(entry) == "lora"


# -- recording a `zoo convert lora` run -------------------------------------------------------------


def lora_entry_name(source: Path) -> str:
    """A LoRA's entry name: `lora/<file stem>` (the output is `<file stem>.safetensors`, so one per file)."""
    return f"{LORA_PREFIX}{Path(source).stem}"


def record_lora_run(result: ProducedLora) -> Path | None:
    """Write or update `OUT/manifest.json` beside a converted LoRA (under the folder lock, atomically).

    Entries already there (model conversions, other LoRAs) are kept; this LoRA's entry is replaced.

    Returns:
        The manifest's path, or None for a dry run (nothing was written, so there is nothing to record).
    """
    if result.dry_run:
        return None
    out = result.output.parent
    path = out / MANIFEST_NAME
    name = lora_entry_name(result.source)
    update_entries(path, lambda _previous: {name: lora_entry(result, out)})
    return path


def lora_entry(result: ProducedLora, root: Path) -> dict[str, Any]:
    """The manifest entry of one converted LoRA (paths relative to `root`, the manifest's folder)."""
    if result.sha256 is None:
        raise ValueError("a LoRA entry records a written file: this result has no sha256")
    name = lora_entry_name(result.source)
    sources = [_lora_source_record(result, root)]
    sources += [_local_file(path, root, "config") for path in result.source_files if path != result.source]
    base = _lora_base_record(result, root)
    license, license_reason = entry_license(sources)
    weights = {
        "file": relative(result.output, root),
        "role": "weights",
        "sha256": result.sha256,
        "size": result.bytes,
        "dtype": result.dtype,
        "num_tensors": result.tensors,
        "num_params": result.params,
        "unknown": {},
    }
    ranks = ",".join(map(str, result.ranks))
    return {
        "type": "lora",
        "name": name,
        "description": f"{result.format} LoRA {result.source.name} (rank {ranks}) on {result.family}, "
        f"in zoo's LoRA format (scale {result.scale:g} folded in)",
        "license": license,
        "sources": sources,
        "base": base,
        "scale": result.scale,
        "outputs": [weights],
        "convert": {
            "source": sources[0]["path"],
            "base": base["source"],
            "scale": result.scale,
            "dtype": "keep",
            "unknown": _reasons(base=base["unknown"].get("source")),
        },
        "parity": None,
        "zoo_version": __version__,
        "unknown": _reasons(license=license_reason, parity=LORA_PARITY),
    }


_LOCAL_LICENSE = "a local file: its licence is not known"


def _local_file(path: Path, root: Path, role: str) -> dict[str, Any]:
    return {
        "kind": "local",
        "role": role,
        "path": relative(path, root),
        "sha256": sha256_file(path),
        "size": path.stat().st_size,
        "license": None,
        "unknown": {"license": _LOCAL_LICENSE},
    }


def _lora_source_record(result: ProducedLora, root: Path) -> dict[str, Any]:
    return {
        "kind": "local",
        "role": "lora",
        "path": relative(result.source, root),
        "sha256": result.source_sha256,
        "size": result.source.stat().st_size,
        "license": None,
        "format": result.format,
        "ranks": list(result.ranks),
        "alpha": result.alpha,
        "unknown": {"license": f"{_LOCAL_LICENSE} (LoRA files carry none that zoo reads)"},
    }


def _lora_base_record(result: ProducedLora, root: Path) -> dict[str, Any]:
    """What BASE was (a family name, or a folder relative to `root`) and the models the LoRA went on."""
    if result.base_kind == "memory" or result.base_source is None:
        source, why = None, "the base was a model in memory (a LoraBase object): it has no name or folder"
    elif result.base_kind == "folder":
        source, why = relative(Path(result.base_source), root), None
    else:
        source, why = result.base_source, None
    models = [
        {key: model[key] for key in ("component", "conversion", "config_sha256", "keymap_sha256")}
        for model in result.base_models
    ]
    return {
        "kind": result.base_kind,
        "source": source,
        "family": result.family,
        "models": models,
        "unknown": _reasons(source=why),
    }


# -- finding entries --------------------------------------------------------------------------------


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
            command = "lora FILE --base BASE" if query.startswith(LORA_PREFIX.rstrip("/")) else query
            raise ConfigError(
                f"no entry {query!r} in the manifest (it has: {', '.join(names) or 'none'})",
                file=manifest.path,
                hint=f"run `zoo convert {command} --out {manifest.folder}` first, or pass --out",
            )
        chosen += [name for name in found if name not in chosen]
    return chosen


# -- checking files against an entry ----------------------------------------------------------------


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


def source_label(source: Mapping[str, Any]) -> str:
    """How messages name a source: its local path, or `repo@revision/file`."""
    if source["kind"] == "local":
        return source["path"]
    return f"{source['repo']}@{source.get('revision') or '?'}/{source.get('file') or '?'}"


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


# -- the schema -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    types: tuple[type, ...]
    nullable: bool = False
    pattern: re.Pattern[str] | None = None
    choices: tuple[str, ...] = ()


_STR, _INT, _DICT, _LIST = Field((str,)), Field((int,)), Field((dict,)), Field((list,))
_SHA, _NUMBER = Field((str,), pattern=SHA256), Field((int, float))
_OPT_STR, _OPT_INT = Field((str,), nullable=True), Field((int,), nullable=True)
_OPT_SHA = Field((str,), nullable=True, pattern=SHA256)
_ROLE = Field((str,), choices=("weights", "config"))

TOP = {
    "manifest_version": _INT,
    "kind": Field((str,), choices=KINDS),
    "zoo_version": _STR,
    "conversions": _DICT,
}
ENTRY = {
    "name": _STR,
    "description": _STR,
    "license": _OPT_STR,
    "target": _DICT,
    "keymap_sha256": _SHA,
    "sources": _LIST,
    "outputs": _LIST,
    "convert": _DICT,
    "parity": Field((dict,), nullable=True),
    "zoo_version": _STR,
    "unknown": _DICT,
}
TARGET = {"model_class": _STR, "config_class": _STR, "config": _DICT, "config_sha256": _SHA}
CONVERT = {"source_kind": Field((str,), choices=("hub", "local")), "source": _STR, "dtype": _STR}
_FILE_FACTS = {"role": _ROLE, "sha256": _OPT_SHA, "size": _OPT_INT, "unknown": _DICT}
HUB_SOURCE = {
    "kind": _STR,
    "repo": _STR,
    "file": _OPT_STR,
    "revision": Field((str,), nullable=True, pattern=COMMIT),
    "license": _OPT_STR,
    **_FILE_FACTS,
}
LOCAL_SOURCE = {"kind": _STR, "path": _STR, "license": _OPT_STR, **_FILE_FACTS}
CONFIG_OUTPUT = {"file": _STR, **_FILE_FACTS}
WEIGHTS_OUTPUT = {**CONFIG_OUTPUT, "dtype": _OPT_STR, "num_tensors": _INT, "num_params": _INT}
PARITY = {
    "max_relative_error": _NUMBER,
    "relative_errors": _LIST,
    "max_abs_errors": _LIST,
    "device": _STR,
    "dtype": _STR,
    "versions": _DICT,
    "zoo_version": _STR,
    "output_sha256": _SHA,
}
PARITY_VERSIONS = ("torch", "diffusers", "transformers")
# A LoRA entry (`"type": "lora"`): what the LoRA file was, the base it went on, the file written.
LORA_ENTRY = {
    "type": Field((str,), choices=("lora",)),
    "name": _STR,
    "description": _STR,
    "license": _OPT_STR,
    "sources": _LIST,
    "base": _DICT,
    "scale": _NUMBER,
    "outputs": _LIST,
    "convert": _DICT,
    "parity": Field((dict,), nullable=True),
    "zoo_version": _STR,
    "unknown": _DICT,
}
LORA_SOURCE = {
    **LOCAL_SOURCE,
    "role": Field((str,), choices=("lora",)),
    "format": _STR,
    "ranks": _LIST,
    "alpha": _STR,
}
LORA_CONFIG_SOURCE = {**LOCAL_SOURCE, "role": Field((str,), choices=("config",))}
LORA_BASE = {
    "kind": Field((str,), choices=LORA_BASE_KINDS),
    "source": _OPT_STR,
    "family": _STR,
    "models": _LIST,
    "unknown": _DICT,
}
LORA_BASE_MODEL = {"component": _STR, "conversion": _STR, "config_sha256": _SHA, "keymap_sha256": _SHA}
LORA_CONVERT = {
    "source": _STR,
    "base": _OPT_STR,
    "scale": _NUMBER,
    "dtype": Field((str,), choices=("keep",)),
    "unknown": _DICT,
}


def validate_manifest(data: Any) -> list[str]:
    """Every way `data` departs from the schema, as `path: problem` strings (empty when valid)."""
    problems: list[str] = []
    if not _fields(data, TOP, "", problems):
        return problems
    if data["manifest_version"] != MANIFEST_VERSION:
        problems.append(f"manifest_version: {data['manifest_version']} is not {MANIFEST_VERSION}")
    for name, entry in data["conversions"].items():
        _validate_entry(name, entry, data["kind"], f"conversions.{name}", problems)
    return problems


def _validate_entry(name: str, entry: Any, kind: str, at: str, problems: list[str]) -> None:
    if isinstance(entry, dict) and entry.get("type", "conversion") not in ENTRY_TYPES:
        problems.append(f"{at}.type: {entry.get('type')!r} is not one of {', '.join(ENTRY_TYPES)}")
        return
    if isinstance(entry, dict) and entry.get("type") == "lora":
        _validate_lora_entry(name, entry, kind, at, problems)
        return
    spec = (
        {**ENTRY, "type": Field((str,), choices=("conversion",))}
        if isinstance(entry, dict) and "type" in entry
        else ENTRY
    )
    if not _fields(entry, spec, at, problems, unknown=True):
        return
    if entry["name"] != name:
        problems.append(f"{at}.name: {entry['name']!r} differs from its key")
    _fields(entry["target"], TARGET, f"{at}.target", problems)
    if isinstance(entry["target"].get("config"), dict) and entry["target"].get("config_sha256"):
        if config_sha256(entry["target"]["config"]) != entry["target"]["config_sha256"]:
            problems.append(f"{at}.target.config_sha256: not the digest of target.config")
    _fields(entry["convert"], CONVERT, f"{at}.convert", problems)
    if entry["parity"] is not None and _fields(entry["parity"], PARITY, f"{at}.parity", problems):
        missing = [v for v in PARITY_VERSIONS if not isinstance(entry["parity"]["versions"].get(v), str)]
        if missing:
            problems.append(f"{at}.parity.versions: missing {', '.join(missing)}")
    if not entry["sources"]:
        problems.append(f"{at}.sources: empty")
    for index, source in enumerate(entry["sources"]):
        _validate_source(source, kind, f"{at}.sources[{index}]", problems)
    if [o.get("role") for o in entry["outputs"] if isinstance(o, dict)].count("weights") != 1:
        problems.append(f"{at}.outputs: needs exactly one output with role 'weights'")
    for index, output in enumerate(entry["outputs"]):
        spec = (
            WEIGHTS_OUTPUT if isinstance(output, dict) and output.get("role") == "weights" else CONFIG_OUTPUT
        )
        if _fields(output, spec, f"{at}.outputs[{index}]", problems, unknown=True):
            _check_relative(output["file"], f"{at}.outputs[{index}].file", problems)


def _validate_lora_entry(name: str, entry: dict[str, Any], kind: str, at: str, problems: list[str]) -> None:
    if kind != "output":
        problems.append(f"{at}.type: a {kind} manifest holds model conversions only, not LoRAs")
    if not name.startswith(LORA_PREFIX):
        problems.append(f"{at}: a LoRA entry's name starts with {LORA_PREFIX!r} (registry names never do)")
    if not _fields(entry, LORA_ENTRY, at, problems, unknown=True):
        return
    if entry["name"] != name:
        problems.append(f"{at}.name: {entry['name']!r} differs from its key")
    if entry["parity"] is not None:
        problems.append(f"{at}.parity: must be null for a LoRA ({LORA_PARITY})")
    sources = entry["sources"]
    lora_sources = [s for s in sources if isinstance(s, dict) and s.get("role") == "lora"]
    if len(lora_sources) != 1:
        problems.append(f"{at}.sources: needs exactly one source with role 'lora' (the LoRA file)")
    for index, source in enumerate(sources):
        where = f"{at}.sources[{index}]"
        if not isinstance(source, dict) or source.get("kind") != "local":
            problems.append(f"{where}.kind: a LoRA's sources are local files")
            continue
        spec = LORA_SOURCE if source.get("role") == "lora" else LORA_CONFIG_SOURCE
        if _fields(source, spec, where, problems, unknown=True) and spec is LORA_SOURCE:
            ranks = source["ranks"]
            if not ranks or not all(isinstance(r, int) and not isinstance(r, bool) and r > 0 for r in ranks):
                problems.append(f"{where}.ranks: a non-empty list of positive integers")
    base = entry["base"]
    if _fields(base, LORA_BASE, f"{at}.base", problems, unknown=True):
        if (base["kind"] == "memory") != (base["source"] is None):
            problems.append(f"{at}.base.source: null exactly when the base was a model in memory")
        if not base["models"]:
            problems.append(f"{at}.base.models: empty")
        for index, model in enumerate(base["models"]):
            _fields(model, LORA_BASE_MODEL, f"{at}.base.models[{index}]", problems)
    outputs = entry["outputs"]
    if len(outputs) != 1 or not isinstance(outputs[0], dict) or outputs[0].get("role") != "weights":
        problems.append(f"{at}.outputs: a LoRA entry has exactly one output, with role 'weights'")
    else:
        if _fields(outputs[0], WEIGHTS_OUTPUT, f"{at}.outputs[0]", problems, unknown=True):
            _check_relative(outputs[0]["file"], f"{at}.outputs[0].file", problems)
    recipe = entry["convert"]
    if _fields(recipe, LORA_CONVERT, f"{at}.convert", problems, unknown=True):
        if recipe["scale"] != entry["scale"]:
            problems.append(
                f"{at}.convert.scale: {recipe['scale']} is not the entry's scale {entry['scale']}"
            )
        if lora_sources and recipe["source"] != lora_sources[0].get("path"):
            problems.append(f"{at}.convert.source: not the path of the LoRA source")
        if isinstance(base, dict) and recipe["base"] != base.get("source"):
            problems.append(f"{at}.convert.base: not base.source")


def _validate_source(source: Any, kind: str, at: str, problems: list[str]) -> None:
    source_kind = source.get("kind") if isinstance(source, dict) else None
    if source_kind not in ("hub", "local"):
        problems.append(f"{at}.kind: must be 'hub' or 'local'")
        return
    if kind == "declared" and source_kind != "hub":
        problems.append(f"{at}.kind: a declared manifest names Hub sources only")
    _fields(source, HUB_SOURCE if source_kind == "hub" else LOCAL_SOURCE, at, problems, unknown=True)


def _fields(
    data: Any, spec: Mapping[str, Field], at: str, problems: list[str], unknown: bool = False
) -> bool:
    """Check an object's fields against a spec; with `unknown`, every null needs a reason and vice versa."""
    if not isinstance(data, dict):
        problems.append(f"{at or '(top)'}: not an object")
        return False
    prefix = f"{at}." if at else ""
    for key in sorted(set(spec) - set(data)):
        problems.append(f"{prefix}{key}: missing")
    for key in sorted(set(data) - set(spec)):
        problems.append(f"{prefix}{key}: not in the schema")
    ok = not (set(spec) - set(data))
    for key, field in spec.items():
        if key in data:
            ok &= _field(data[key], field, f"{prefix}{key}", problems)
    if unknown and ok:
        _check_reasons(data, spec, prefix, problems)
    return ok


def _field(value: Any, field: Field, at: str, problems: list[str]) -> bool:
    if value is None:
        if not field.nullable:
            problems.append(f"{at}: must not be null")
        return field.nullable
    if isinstance(value, bool) or not isinstance(value, field.types):
        problems.append(f"{at}: expected {'/'.join(t.__name__ for t in field.types)}")
        return False
    if field.pattern is not None and not field.pattern.match(value):
        what = "40 lowercase hex digits" if field.pattern is COMMIT else "64 lowercase hex digits"
        problems.append(f"{at}: {value!r} is not {what}")
        return False
    if field.choices and value not in field.choices:
        problems.append(f"{at}: {value!r} is not one of {', '.join(field.choices)}")
        return False
    return True


def _check_reasons(
    data: Mapping[str, Any], spec: Mapping[str, Field], prefix: str, problems: list[str]
) -> None:
    reasons = data["unknown"]
    nulls = {key for key in spec if key != "unknown" and data[key] is None}
    for key in sorted(nulls - set(reasons)):
        problems.append(f"{prefix}{key}: null without a reason in {prefix}unknown")
    for key in sorted(set(reasons) - nulls):
        problems.append(f"{prefix}unknown.{key}: a reason for a value that is not null")
    for key, reason in reasons.items():
        if not isinstance(reason, str) or not reason.strip():
            problems.append(f"{prefix}unknown.{key}: the reason must be a non-empty string")


def _check_relative(file: str, at: str, problems: list[str]) -> None:
    if file.startswith("/") or ".." in Path(file).parts:
        problems.append(f"{at}: {file!r} must be a relative path inside the output folder")


__all__ = [
    "ENTRY_TYPES",
    "LORA_PARITY",
    "LORA_PREFIX",
    "MANIFEST_NAME",
    "MANIFEST_VERSION",
    "PARITY_NOT_MEASURED",
    "Declared",
    "FileCheck",
    "Manifest",
    "Produced",
    "ProducedLora",
    "check_files",
    "config_sha256",
    "dumps",
    "entry_license",
    "entry_type",
    "hub_license",
    "is_lora",
    "locked",
    "lora_entry",
    "lora_entry_name",
    "matches",
    "new_manifest",
    "output_entry",
    "read_manifest",
    "recipe_revision",
    "record_convert_run",
    "record_lora_run",
    "relative",
    "select",
    "source_label",
    "source_record",
    "target_record",
    "update_entries",
    "validate_manifest",
    "weights_output",
    "write_manifest",
]

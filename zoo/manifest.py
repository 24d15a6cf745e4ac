"""Manifests: what a conversion read and wrote, with hashes, so an output folder can be verified alone.

One schema (version 1), two kinds:
- `output`: `OUT/manifest.json`, written by `zoo convert`: the facts of real runs into that folder.
- `declared`: `manifests/<family>.json` in the repository, generated from the declarations by
  `ci/write_manifests.py`: pinned sources, and output facts only once a real run has been merged in.

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
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from zoo import __version__
from zoo.errors import ConfigError, FormatError, HashMismatchError
from zoo.hub import COMMIT, SHA256, cached_file_origin, cached_path, sha256_file
from zoo.loading import CONFIG_NAME, WEIGHTS_NAME

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
KINDS = ("output", "declared")
# Files that sit next to top-level outputs in a published repo (or its snapshot) without being outputs.
COMPANIONS = frozenset({MANIFEST_NAME, "README.md", ".gitattributes"})
PARITY_NOT_MEASURED = "not measured yet: run `zoo verify {name} --parity --record`"
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


class DeclaredPin(Protocol):
    """A pinned upstream file (`converters.declaration.PinnedFile`)."""

    @property
    def repo(self) -> str: ...
    @property
    def filename(self) -> str: ...
    @property
    def revision(self) -> str | None: ...
    @property
    def sha256(self) -> str | None: ...
    @property
    def size(self) -> int | None: ...
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
    text = dumps(data)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


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


# -- finding entries --------------------------------------------------------------------------------


def matches(name: str, query: str) -> bool:
    """`sdxl` matches every `sdxl.*` entry; `sdxl.unet` only itself."""
    return name == query or name.startswith(query + ".")


def select(manifest: Manifest, queries: Sequence[str] = ()) -> list[str]:
    """Entry names matching any query (all entries when there is none); an unmatched query is an error."""
    names = sorted(manifest.entries)
    if not queries:
        return names
    chosen: list[str] = []
    for query in queries:
        found = [name for name in names if matches(name, query)]
        if not found:
            raise ConfigError(
                f"no entry {query!r} in the manifest (it has: {', '.join(names) or 'none'})",
                file=manifest.path,
                hint=f"run `zoo convert {query} --out {manifest.folder}` first, or pass --out",
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
        checks += _extras(name, root, entry)
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


def _extras(name: str, root: Path, entry: Mapping[str, Any]) -> list[FileCheck]:
    named = {os.path.abspath(root / output["file"]) for output in entry["outputs"]}
    folders = {Path(path).parent for path in named}
    found = sorted(p for folder in folders if folder.is_dir() for p in folder.iterdir() if p.is_file())
    return [
        FileCheck(name, "output", relative(p, root), str(p), "extra", "not named by the manifest")
        for p in found
        if os.path.abspath(p) not in named and not (p.parent == root and p.name in COMPANIONS)
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
    if not _fields(entry, ENTRY, at, problems, unknown=True):
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
    "MANIFEST_NAME",
    "MANIFEST_VERSION",
    "PARITY_NOT_MEASURED",
    "Declared",
    "FileCheck",
    "Manifest",
    "Produced",
    "check_files",
    "config_sha256",
    "dumps",
    "entry_license",
    "hub_license",
    "locked",
    "matches",
    "new_manifest",
    "output_entry",
    "read_manifest",
    "recipe_revision",
    "record_convert_run",
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

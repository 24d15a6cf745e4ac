"""Recording a `zoo convert` run in `OUT/manifest.json`: what each conversion read and wrote.

Each converted component becomes one entry: its sources (Hub files with repo, revision and licence when
they sit in the HF cache, else local paths), its outputs with sha256 and size, our model's config and
the key map's digest, and how to run the conversion again. A parity measurement recorded earlier is
kept only for the very same output bytes from the very same sources.

Nothing is read again to record it: the weights' sha256 comes from the writer, a source's from its HF
cache blob name or from the run's background hashing (`InputHashes`), and each source says which
(`sha256_from`). Only the small files (configs, carried tokenizers) are hashed here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from converters._convert.component import ComponentResult
from converters._convert.input_hashes import InputHashes
from converters.declaration import Conversion
from zoo import __version__
from zoo.errors import HashMismatchError
from zoo.formats import CONFIG_NAME, WEIGHTS_NAME
from zoo.hub import cached_file_origin, hash_file, sha256_file
from zoo.manifest import MANIFEST_NAME, PARITY_NOT_MEASURED, config_sha256, relative, update_entries


def record_convert_run(
    out: Path,
    results: Sequence[ComponentResult],
    conversions: Sequence[Conversion],
    *,
    source: str | Path | None,
    dtype: object | None,
    hashes: InputHashes | None = None,
    durable: bool = False,
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
        hashes: The run's source hashes (computed while it converted); by default each source is
            hashed here (or named by its HF cache blob).
        durable: fsync the manifest (`zoo convert --durable`).

    Returns:
        The manifest's path, or None when nothing was recorded.
    """
    produced = [result for result in results if not result.dry_run]
    if not produced:
        return None
    if hashes is None:
        with InputHashes() as own:
            return record_convert_run(
                out, results, conversions, source=source, dtype=dtype, hashes=own, durable=durable
            )
    declared = {conversion.name: conversion for conversion in conversions}
    path = out / MANIFEST_NAME
    for result in produced:  # every source's hash before taking the lock, not while holding it
        for file in result.source_files:
            hashes.get(Path(file))

    def make(previous: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {
            r.name: output_entry(r, declared[r.name], out, source, dtype, previous.get(r.name), hashes)
            for r in produced
        }

    update_entries(path, make, durable=durable)
    return path


def output_entry(
    result: ComponentResult,
    conversion: Conversion,
    root: Path,
    source: str | Path | None,
    dtype: object | None,
    previous: Mapping[str, Any] | None = None,
    hashes: InputHashes | None = None,
) -> dict[str, Any]:
    """The manifest entry of one converted component (output paths relative to `root`)."""
    config = json.loads((result.folder / CONFIG_NAME).read_text(encoding="utf-8"))
    sources = [
        source_record(Path(path), conversion, root, result.source_roles.get(str(path)), hashes=hashes)
        for path in result.source_files
    ]
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
    outputs += [file_record(result.folder / file, root, role) for file, role in sorted(result.assets.items())]
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
        "unknown": reasons(
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


def source_record(
    path: Path,
    conversion: Conversion,
    root: Path,
    role: str | None = None,
    *,
    hashes: InputHashes | None = None,
) -> dict[str, Any]:
    """A source file: its Hub origin when it sits in the HF cache, else its path relative to `root`.

    `role`: what the file is when it is not the model's own (an asset: `tokenizer`, `scheduler`...);
    by default `config` for a config.json and `weights` otherwise. `hashes`: where its sha256 already
    is (else it is named by its HF cache blob, or hashed here).
    """
    digest = hashes.get(path) if hashes is not None else hash_file(path)
    sha256, size = digest.sha256, digest.size
    role = role or ("config" if path.name == CONFIG_NAME else "weights")
    origin = cached_file_origin(path)
    if origin is None:
        why = f"a local file: its licence is not known (the declared upstream {conversion.hub_repo} is {conversion.license})"
        return {
            "kind": "local",
            "role": role,
            "path": relative(path, root),
            "sha256": sha256,
            "sha256_from": digest.origin,
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
        "sha256_from": digest.origin,
        "size": size,
        "license": license,
        "unknown": reasons(license=why),
    }


def hub_license(conversion: Conversion, repo: str) -> tuple[str | None, str | None]:
    """The licence of a Hub repo's files as the declaration states it, or None and why not."""
    for part in conversion.parts:
        if part.pinned is not None and part.pinned.repo == repo and part.pinned.license:
            return part.pinned.license, None
    if repo == conversion.hub_repo:
        return conversion.license, None
    return None, f"{repo} is not the declared upstream ({conversion.hub_repo}): its licence is not recorded"


def _check_pin(conversion: Conversion, repo: str, file: str, revision: str, sha256: str, path: Path) -> None:
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


def _recipe(
    conversion: Conversion, source: str | Path | None, dtype: object | None, root: Path
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


def reasons(**reasons: str | None) -> dict[str, str]:
    return {field: reason for field, reason in reasons.items() if reason is not None}


__all__ = [
    "entry_license",
    "file_record",
    "hub_license",
    "output_entry",
    "reasons",
    "record_convert_run",
    "source_record",
    "target_record",
]

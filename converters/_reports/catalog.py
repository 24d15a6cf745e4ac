"""`zoo list`: every declared conversion (and declared file converted on a base) as plain data, and
whether its outputs are in OUT."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from converters import registry
from converters.declaration import Conversion, PinnedFile, UpstreamPart
from zoo.errors import FormatError
from zoo.formats import CONFIG_NAME, WEIGHTS_NAME
from zoo.manifest import MANIFEST_NAME, Manifest, check_files, read_manifest


def describe_conversions(out: Path | None = None) -> list[dict[str, Any]]:
    """Every declared conversion as plain data, its pinned sources included; then every declared file
    that converts only against a base (`Family.based_files`), with the base it goes on.

    With `out`, also whether its outputs are in `out/<name>/` and match `out/manifest.json` by sha256.
    """
    manifest = _output_manifest(out)
    conversions = [
        {
            "name": c.name,
            "family": c.family,
            "description": c.description,
            "hub_repo": c.hub_repo,
            "license": c.license,
            "parts": [p.subfolder for p in c.parts],
            "upstream_classes": [p.library_class for p in c.parts],
            "pinned": [_pin_facts(p.pinned) for p in c.parts if p.pinned is not None],
            "sources": [_pinned_source(c, p) for p in c.parts],
            "single_file": c.single_file is not None,
            "base": None,
            "outputs": _output_status(c.name, out, manifest) if out is not None else None,
        }
        for c in registry.all_conversions().values()
    ]
    return conversions + _based_files(out, manifest)


def _based_files(out: Path | None, manifest: Manifest | str | None) -> list[dict[str, Any]]:
    return [
        {
            "name": f.name,
            "family": family.name,
            "description": f"{f.description} (zoo convert {family.name.replace('_', '-')} FILE "
            f"--base OUT/{f.base})",
            "hub_repo": f.pinned.repo,
            "license": f.pinned.license,
            "parts": [],
            "upstream_classes": [],
            "pinned": [_pin_facts(f.pinned)],
            "sources": [_pin_record(f.pinned, f.pinned.license)],
            "single_file": False,
            "base": f.base,
            "outputs": _output_status(f.name, out, manifest) if out is not None else None,
        }
        for family in registry.families().values()
        for f in family.based_files
    ]


def _pin_facts(pin: PinnedFile) -> dict[str, Any]:
    return {"file": pin.filename, "revision": pin.revision, "sha256": pin.sha256}


def _pinned_source(conversion: Conversion, part: UpstreamPart) -> dict[str, Any]:
    pin = part.pinned
    if pin is None:
        return {"repo": conversion.hub_repo, "file": None, "unknown": "no pinned file declared"}
    return _pin_record(pin, pin.license or conversion.license)


def _pin_record(pin: PinnedFile, license: str | None) -> dict[str, Any]:
    return {
        "repo": pin.repo,
        "file": pin.filename,
        "revision": pin.revision,
        "sha256": pin.sha256,
        "size": pin.size,
        "license": license,
        "unknown": pin.unknown,
    }


def _output_manifest(out: Path | None) -> Manifest | str | None:
    if out is None or not (out / MANIFEST_NAME).is_file():
        return None
    try:
        return read_manifest(out / MANIFEST_NAME)
    except FormatError as error:
        return error.one_line()


def _output_status(name: str, out: Path, manifest: Manifest | str | None) -> dict[str, Any]:
    """present: both files are there; verified: True/False by sha256 against the manifest, None unknown."""
    folder = out / name
    present = (folder / WEIGHTS_NAME).is_file() and (folder / CONFIG_NAME).is_file()
    status: dict[str, Any] = {"folder": str(folder), "present": present, "verified": None}
    if isinstance(manifest, str):
        return {**status, "status": f"manifest unreadable: {manifest}"}
    if manifest is None or name not in manifest.entries:
        return {**status, "status": "present, not in a manifest" if present else "absent"}
    checks = check_files(manifest, name, out, sources=False, extras=False)
    bad = [check for check in checks if check.status != "ok"]
    if not bad:
        return {**status, "verified": True, "status": "verified"}
    mismatched = [check.file for check in bad if check.status == "mismatch"]
    if mismatched:
        return {**status, "verified": False, "status": f"MISMATCH: {', '.join(mismatched)}"}
    return {**status, "status": f"{bad[0].status}: {bad[0].file}"}


def describe_families() -> list[dict[str, Any]]:
    """Every registered family: what it is, what it declares, what it fits."""
    return [
        {
            "name": family.name,
            "description": family.description,
            "conversions": [c.name for c in family.conversions],
            "variants": [c.name for c in family.variants],
            "pipeline_class": family.pipeline_class,
            "single_file": family.single_file.recognizer.description if family.single_file else None,
            "lora_parts": list(family.lora_parts),
        }
        for family in registry.families().values()
    ]


__all__ = ["describe_conversions", "describe_families"]

"""`zoo verify --parity`: measure float32 parity against the upstream model; record it, or check it.

The error may grow to max(2 × recorded, 1e-5) before it fails; a recorded figure counts only for the
very output bytes it was measured on. LoRA and Control-LoRA entries: not applicable (the test suite measures them).
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from converters import registry
from converters._convert.sources import resolve_source
from converters._verify.findings import Finding, Status, source_argument, source_findings, weights_findings
from converters._verify.parity import measure_parity
from zoo import __version__
from zoo.errors import ConfigError
from zoo.manifest import (
    LORA_PARITY,
    MANIFEST_NAME,
    Manifest,
    entry_type,
    locked,
    read_manifest,
    weights_output,
    write_manifest,
)

PARITY_FLOOR = 1e-5  # float32: the error may always be this large, whatever was recorded
PARITY_GROWTH = 2.0  # ... and twice what was recorded


def parity_findings(manifest: Manifest, name: str, out: Path, device: str, record: bool) -> list[Finding]:
    """Measure parity in float32; record it, or check it against the recorded figure."""
    entry = manifest.entries[name]
    if entry_type(entry) != "conversion":  # adapters on a base: the entry says where parity is measured
        why = entry["unknown"].get("parity", LORA_PARITY)
        return [Finding(name, "parity", "not applicable", weights_output(entry)["file"], why)]
    if record and manifest.kind != "output":
        raise ConfigError("--record writes into an output manifest (OUT/manifest.json)", file=manifest.path)
    blocked = source_findings(manifest, name, "parity") + weights_findings(manifest, name, out)
    if blocked:
        return blocked
    conversion = registry.resolve(name)[0]
    source, revision = source_argument(manifest, entry)
    folder = (manifest.output_root(out) / weights_output(entry)["file"]).parent
    result = measure_parity(conversion, resolve_source(conversion, source, revision), folder, device=device)
    measured = parity_record(result.to_dict(), weights_output(entry)["sha256"])
    if record:
        return [_record_parity(manifest, name, measured)]
    return [_check_parity(name, measured, entry.get("parity"), weights_output(entry)["sha256"])]


def parity_record(result: Mapping[str, Any], output_sha256: str) -> dict[str, Any]:
    """A manifest's `parity` object from a measurement, with the versions that produced it."""
    return {
        "max_relative_error": result["max_relative_error"],
        "relative_errors": list(result["relative_errors"]),
        "max_abs_errors": list(result["max_abs_errors"]),
        "device": result["device"],
        "dtype": result["dtype"],
        "versions": {
            name: importlib.metadata.version(name) for name in ("torch", "diffusers", "transformers")
        },
        "zoo_version": __version__,
        "output_sha256": output_sha256,
    }


def parity_threshold(recorded: Mapping[str, Any] | None) -> float:
    """How large the float32 error may be: max(2 × recorded, 1e-5)."""
    previous = recorded["max_relative_error"] if recorded else 0.0
    return max(PARITY_GROWTH * previous, PARITY_FLOOR)


def _check_parity(
    name: str, measured: Mapping[str, Any], recorded: Mapping[str, Any] | None, output_sha256: str
) -> Finding:
    valid = recorded if recorded and recorded.get("output_sha256") == output_sha256 else None
    limit = parity_threshold(valid)
    errors = measured["relative_errors"]
    worst = max(range(len(errors)), key=errors.__getitem__)
    against = f"recorded {valid['max_relative_error']:.3g}" if valid else "nothing recorded for these bytes"
    detail = f"max relative error {errors[worst]:.3g} (limit {limit:.3g}; {against}) on {measured['device']}"
    status: Status = "mismatch" if errors[worst] > limit else "ok"
    return Finding(name, "parity", status, f"output[{worst}]", detail)


def _record_parity(manifest: Manifest, name: str, measured: dict[str, Any]) -> Finding:
    with locked(manifest.folder):
        data = read_manifest(manifest.path).data
        entry = data["conversions"][name]
        entry["parity"] = measured
        entry["unknown"].pop("parity", None)
        write_manifest(manifest.path, data)
    detail = f"recorded max relative error {measured['max_relative_error']:.3g} on {measured['device']}"
    return Finding(name, "parity", "recorded", MANIFEST_NAME, detail)


__all__ = ["PARITY_FLOOR", "parity_findings", "parity_record", "parity_threshold"]

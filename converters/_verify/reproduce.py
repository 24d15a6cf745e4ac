"""`zoo verify --reproduce`: convert again from the recorded sources into a temporary folder and compare.

Catches nondeterminism, code drift and edited outputs, naming the first tensor that differs. A LoRA
entry is redone with `convert_lora` from the recorded file, base and scale, and its base's models are
compared with the recorded ones too. A Control-LoRA entry is merged again with `convert_control_lora`
from the recorded file and base folder (both hash-checked sources).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from converters._convert.by_name import convert
from converters._verify.differences import first_difference
from converters._verify.findings import Finding, entry_dtype, source_argument, source_findings
from converters.control_lora import convert_control_lora
from converters.lora import convert_lora
from zoo.hub import sha256_file
from zoo.manifest import Manifest, entry_type, is_lora, weights_output


def reproduce_findings(manifest: Manifest, name: str, out: Path) -> list[Finding]:
    """Convert again from the manifest's sources into a temp folder and compare every output."""
    entry = manifest.entries[name]
    blocked = source_findings(manifest, name, "reproduce")
    if blocked:
        return blocked
    if is_lora(entry):
        return reproduce_lora(manifest, name, out)
    if entry_type(entry) == "control_lora":
        return reproduce_control_lora(manifest, name, out)
    source, revision = source_argument(manifest, entry)
    root = manifest.output_root(out)
    with tempfile.TemporaryDirectory(prefix="zoo-reproduce-") as temp:
        run = convert(name, out=Path(temp), source=source, revision=revision, dtype=entry_dtype(entry))
        fresh_root = run.results[0].folder.parent
        return [
            compare_output(name, output, fresh_root / output["file"], root / output["file"])
            for output in entry["outputs"]
        ]


def reproduce_lora(manifest: Manifest, name: str, out: Path) -> list[Finding]:
    """Convert a LoRA entry's file again onto its recorded base and compare the bytes (and the base)."""
    entry = manifest.entries[name]
    recipe, recorded_base = entry["convert"], entry["base"]
    if recipe["base"] is None:
        why = recipe["unknown"].get("base", "no base recorded")
        return [Finding(name, "reproduce", "unknown", "base", f"cannot reproduce: {why}")]
    label = f"base {recipe['base']}"
    base: str | Path = recipe["base"]
    if recorded_base["kind"] == "folder":
        folder = manifest.folder / recipe["base"]
        if not folder.is_dir():
            detail = f"cannot reproduce: the base folder {folder} is not here"
            return [Finding(name, "reproduce", "missing", label, detail)]
        base = folder
    output = weights_output(entry)
    with tempfile.TemporaryDirectory(prefix="zoo-reproduce-") as temp:
        fresh = convert_lora(manifest.folder / recipe["source"], base, out=Path(temp), scale=recipe["scale"])
        compared = compare_output(name, output, fresh.output, manifest.output_root(out) / output["file"])
    return [_base_finding(name, label, recorded_base["models"], fresh.base_models), compared]


def reproduce_control_lora(manifest: Manifest, name: str, out: Path) -> list[Finding]:
    """Merge a Control-LoRA entry's file with its recorded base again and compare both files written.

    The base's weights and config are sources of the entry, so a changed base has already blocked this.
    """
    recipe = manifest.entries[name]["convert"]
    with tempfile.TemporaryDirectory(prefix="zoo-reproduce-") as temp:
        fresh = Path(temp)
        convert_control_lora(manifest.folder / recipe["source"], manifest.folder / recipe["base"], fresh)
        root = manifest.output_root(out)
        return [
            compare_output(name, output, fresh / output["file"], root / output["file"])
            for output in manifest.entries[name]["outputs"]
        ]


def _base_finding(
    name: str, label: str, recorded: Sequence[Mapping[str, Any]], fresh: Sequence[Mapping[str, Any]]
) -> Finding:
    """The base's models now (conversion, config and key-map digests) against the recorded ones."""
    if [dict(model) for model in recorded] == [dict(model) for model in fresh]:
        models = ", ".join(f"{m['conversion']} (config {m['config_sha256'][:12]})" for m in fresh)
        return Finding(name, "reproduce", "ok", label, f"the same base models: {models}")
    now = {model["component"]: model for model in fresh}
    for model in recorded:
        current = now.get(model["component"])
        if current is None:
            return Finding(
                name, "reproduce", "mismatch", label, f"the LoRA no longer changes its {model['component']}"
            )
        for key in ("conversion", "config_sha256", "keymap_sha256"):
            if current[key] != model[key]:
                detail = f"{model['component']} {key} is now {current[key]}, the manifest says {model[key]}"
                return Finding(name, "reproduce", "mismatch", label, detail)
    extra = sorted(set(now) - {model["component"] for model in recorded})
    return Finding(name, "reproduce", "mismatch", label, f"the LoRA now also changes {', '.join(extra)}")


def compare_output(name: str, output: Mapping[str, Any], fresh: Path, local: Path) -> Finding:
    """A fresh conversion's file against the manifest's hash and against the local copy."""
    label, recorded = output["file"], output["sha256"]
    fresh_sha = sha256_file(fresh)
    local_sha = sha256_file(local) if local.is_file() else None
    if recorded is not None and fresh_sha != recorded:
        if local_sha == recorded:
            where, tensor = first_difference(local, fresh)
        else:
            where, tensor = "the recorded bytes are not here to compare", None
        detail = f"a fresh conversion gives sha256 {fresh_sha}, the manifest says {recorded}: {where}"
        return Finding(name, "reproduce", "mismatch", label, detail, tensor)
    if local_sha is not None and local_sha != fresh_sha:
        where, tensor = first_difference(local, fresh)
        detail = f"the local file (sha256 {local_sha}) differs from a fresh conversion: {where}"
        return Finding(name, "reproduce", "mismatch", label, detail, tensor)
    if recorded is None:
        detail = f"no sha256 recorded ({output['unknown'].get('sha256', '')}); a fresh conversion gives {fresh_sha}"
        return Finding(name, "reproduce", "unknown", label, detail)
    return Finding(name, "reproduce", "ok", label, f"reproduced byte for byte (sha256 {fresh_sha})")


__all__ = ["compare_output", "reproduce_control_lora", "reproduce_findings", "reproduce_lora"]

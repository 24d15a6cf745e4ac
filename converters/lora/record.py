"""Recording a `zoo convert lora` run in `OUT/manifest.json`, beside the entries already there.

A LoRA entry (`lora/<file stem>`, `"type": "lora"`) records the LoRA file (format, ranks, how alpha was
found), the base it was placed on (a family, a folder, or a model in memory) and the models it changes
there, the scale folded in, and the file written, so `zoo verify` can check and redo it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from converters._convert.record import entry_license, reasons
from zoo import __version__
from zoo.hub import sha256_file
from zoo.manifest import LORA_PARITY, MANIFEST_NAME, lora_entry_name, relative, update_entries

if TYPE_CHECKING:  # the result is made by `convert_lora`, which records it through this module
    from converters.lora.convert import LoraConversionResult


def record_lora_run(result: LoraConversionResult) -> Path | None:
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


def lora_entry(result: LoraConversionResult, root: Path) -> dict[str, Any]:
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
    ranks = ",".join(map(str, result.ranks)) or "none"
    kinds = ", ".join(f"{kind} {count}" for kind, count in result.kinds.items())
    return {
        "type": "lora",
        "name": name,
        "description": f"{result.format} LoRA {result.source.name} ({kinds}; rank {ranks}) on {result.family}, "
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
            "unknown": reasons(base=base["unknown"].get("source")),
        },
        "parity": None,
        "zoo_version": __version__,
        "unknown": reasons(license=license_reason, parity=LORA_PARITY),
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


def _lora_source_record(result: LoraConversionResult, root: Path) -> dict[str, Any]:
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


def _lora_base_record(result: LoraConversionResult, root: Path) -> dict[str, Any]:
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
        "unknown": reasons(source=why),
    }


__all__ = ["lora_entry", "record_lora_run"]

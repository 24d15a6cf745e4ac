"""Recording a `zoo convert control-lora` run in `OUT/manifest.json`, beside the entries already there.

A Control-LoRA entry (`control_lora/<file stem>`, `"type": "control_lora"`) records the file (and the
declared Stability file it is, by name or sha256), the base it was merged with (the base UNet folder's
weights and config, by sha256: the output is made of the base's weights), our ControlNet's config, the
two files written, and the command that redoes it, so `zoo verify --hashes --reproduce` can check it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from converters._convert.record import file_record, reasons, target_record
from converters.control_lora.files import ENTRY_PREFIX, HUB_REPO, UNPINNED, declared_file
from zoo import __version__
from zoo.formats import CONFIG_NAME, WEIGHTS_NAME
from zoo.hub import sha256_file
from zoo.manifest import CONTROL_LORA_PARITY, MANIFEST_NAME, relative, update_entries

if TYPE_CHECKING:  # the result is made by `convert_control_lora`, which records it through this module
    from converters.control_lora.convert import ControlLoraResult

COMMAND = "zoo convert control-lora"
BASE_LICENSE = "the base's licence is in its own entry; the merged ControlNet takes the Control-LoRA's"
UNDECLARED = (
    f"the file is none of {HUB_REPO}'s by name (control-lora-<kind>-rank<128|256>.safetensors)"
    + " or sha256, so its licence is not known: convert Stability's file under its own name"
)


def record_control_lora_run(result: ControlLoraResult, out: Path) -> Path:
    """Write or update `out/manifest.json` with this run's entry (under the folder lock, atomically)."""
    path = out / MANIFEST_NAME
    entry = control_lora_entry(result, out)
    update_entries(path, lambda _previous: {entry["name"]: entry})
    return path


def control_lora_entry(result: ControlLoraResult, root: Path) -> dict[str, Any]:
    """The manifest entry of one merged Control-LoRA (paths relative to `root`, the manifest's folder)."""
    if result.sha256 is None:
        raise ValueError("a Control-LoRA entry records written files: this result has no sha256")
    source = _source_record(result, root)
    config = json.loads((result.folder / CONFIG_NAME).read_text(encoding="utf-8"))
    weights = {
        **file_record(result.folder / WEIGHTS_NAME, root, "weights"),
        "dtype": config["dtype"],
        "num_tensors": result.tensors,
        "num_params": result.params,
    }
    base = relative(result.base, root)
    return {
        "type": "control_lora",
        "name": ENTRY_PREFIX + result.folder.name,
        "description": f"Control-LoRA {result.source.name} (rank {','.join(map(str, result.ranks))}) merged "
        f"with the SDXL UNet in {base}: a ControlNet of ours",
        **_license(result, source),
        "sources": [source, *_base_records(result.base, root)],
        "target": target_record(config),
        "outputs": [weights, file_record(result.folder / CONFIG_NAME, root, "config")],
        "convert": {
            "source": source["path"],
            "base": base,
            "dtype": "keep",
            "command": f"{COMMAND} {result.source.name} --base out/{result.base.name}",
            "unknown": {},
        },
        "parity": None,
        "zoo_version": __version__,
        "unknown": reasons(parity=CONTROL_LORA_PARITY, **_license_reasons(source)),
    }


def _source_record(result: ControlLoraResult, root: Path) -> dict[str, Any]:
    sha256 = sha256_file(result.source)
    declared = declared_file(result.source, sha256)
    pinned = declared.pinned if declared else None
    return {
        "kind": "local",
        "role": "control_lora",
        "path": relative(result.source, root),
        "sha256": sha256,
        "size": result.source.stat().st_size,
        "license": pinned.license if pinned else None,
        "repo": pinned.repo if pinned else None,
        "file": pinned.filename if pinned else None,
        "revision": pinned.revision if pinned else None,
        "unknown": reasons(
            license=None if pinned else UNDECLARED,
            repo=None if pinned else UNDECLARED,
            file=None if pinned else UNDECLARED,
            revision=UNDECLARED
            if pinned is None
            else None
            if pinned.revision
            else pinned.unknown or UNPINNED,
        ),
    }


def _license(result: ControlLoraResult, source: dict[str, Any]) -> dict[str, str | None]:
    declared = declared_file(result.source, source["sha256"]) if source["license"] else None
    return {
        "license": source["license"],
        "license_name": declared.license_name if declared else None,
        "license_link": declared.license_link if declared else None,
    }


def _license_reasons(source: dict[str, Any]) -> dict[str, str | None]:
    why = None if source["license"] else f"source {source['path']}: {UNDECLARED}"
    return {"license": why, "license_name": why, "license_link": why}


def _base_records(base: Path, root: Path) -> list[dict[str, Any]]:
    """The base folder's weights and config: the output is made of them, so they are sources too."""
    return [
        {
            "kind": "local",
            "role": role,
            "path": relative(base / name, root),
            "sha256": sha256_file(base / name),
            "size": (base / name).stat().st_size,
            "license": None,
            "unknown": {"license": BASE_LICENSE},
        }
        for role, name in (("base_weights", WEIGHTS_NAME), ("base_config", CONFIG_NAME))
    ]


__all__ = ["control_lora_entry", "record_control_lora_run"]

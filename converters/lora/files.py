"""Our LoRA format: keys named by chain paths, alpha folded in, written by the deterministic writer.

    <component>.<chain path>.lora_down.weight    (rank, in) or (rank, in, kh, kw)
    <component>.<chain path>.lora_up.weight      (out, rank) or (out, rank, 1, 1), alpha/rank and scale folded in
    <component>.<chain path>.<role>              other kinds: LoHa, LoKr, Tucker, diffs, DoRA (`zoo.lora`)

`<component>` is the zoo component the layer belongs to (`unet`, `text_encoder`: SDXL's two text
towers are one model of ours). The header metadata says what the file is for and where it came from,
and records each layer's update (`zoo.lora.layers`: kind, rank, alpha factor, DoRA rule, Tucker, the
upstream module); it holds no paths or times, so the same LoRA and base give the same bytes anywhere.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import torch

from converters._checkpoints import WriteSummary, write_safetensors
from converters.lora.formats import LoraFile
from converters.lora.mapping import MappedLora
from zoo.errors import ConfigError, FormatError
from zoo.formats import FORMAT_KEY, LORA_KEY_PREFIX
from zoo.formats import LORA_FORMAT as ZOO_FORMAT

PREFIX = LORA_KEY_PREFIX


def lora_metadata(mapped: MappedLora) -> dict[str, str]:
    """The header metadata of a converted LoRA (strings only, fixed keys)."""
    ranks = mapped.ranks
    metadata = {
        FORMAT_KEY: ZOO_FORMAT,
        f"{PREFIX}base": mapped.base.family,
        f"{PREFIX}source_format": mapped.lora.format,
        f"{PREFIX}source_sha256": mapped.lora.sha256,
        f"{PREFIX}rank": ",".join(str(rank) for rank in ranks),
        f"{PREFIX}scale": repr(float(mapped.scale)),
        f"{PREFIX}alpha": "folded in (alpha / rank x scale): lora_up, hada_w1_a, lokr_w1(_a), diffs",
        f"{PREFIX}components": ",".join(mapped.components),
        f"{PREFIX}kinds": _json(Counter(placed.entry.kind for placed in mapped.placed)),
        f"{PREFIX}layers": _json({placed.key: placed.describe() for placed in mapped.placed}),
    }
    for model in mapped.base.models:
        if model.component in mapped.components:
            index = model.index()
            metadata[f"{PREFIX}{model.component}.model"] = model.conversion.name
            metadata[f"{PREFIX}{model.component}.config_sha256"] = index.config_sha256
            metadata[f"{PREFIX}{model.component}.keymap_sha256"] = index.keymap_sha256
    return metadata


def _json(data: Mapping[str, object]) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def write_zoo_lora(path: Path, mapped: MappedLora) -> WriteSummary:
    """Write the mapped LoRA in our format (atomic; deterministic bytes)."""
    return write_safetensors(path, mapped.plans(), lora_metadata(mapped))


def zoo_lora_weights(lora: LoraFile, component: str, config_sha256: str) -> dict[str, torch.Tensor]:
    """One component's weights from a file in our format, after checking it was made for this config."""
    if lora.format != "zoo":
        raise FormatError(f"not a zoo LoRA but {lora.format}", file=lora.path)
    made_for = lora.metadata.get(f"{PREFIX}{component}.config_sha256")
    if made_for is None:
        have = lora.metadata.get(f"{PREFIX}components", "none")
        raise ConfigError(f"this LoRA holds nothing for a {component} (it has: {have})", file=lora.path)
    if made_for != config_sha256:
        model = lora.metadata.get(f"{PREFIX}{component}.model", "?")
        raise ConfigError(
            f"this LoRA was converted for another {component} ({model}, config {made_for[:12]}), "
            f"not this one (config {config_sha256[:12]})",
            file=lora.path,
            hint="convert the original LoRA again with --base naming this model",
        )
    return _strip(lora.tensors, f"{component}.")


def _strip(tensors: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {key.removeprefix(prefix): tensor for key, tensor in tensors.items() if key.startswith(prefix)}


__all__ = ["lora_metadata", "write_zoo_lora", "zoo_lora_weights"]

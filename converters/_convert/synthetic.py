"""Seeded synthetic sources: upstream models with random weights and real configs, saved the way the
Hub holds them. They make every conversion runnable offline, in tests and in the quick start."""

from __future__ import annotations

import gc
import json
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from converters._checkpoints import TensorPlan, open_checkpoint, write_safetensors
from converters._convert.sources import find_weights
from converters.declaration import Conversion, Size, UpstreamPart


def write_synthetic_pipeline(
    conversions: Sequence[Conversion],
    size: Size,
    folder: Path,
    pipeline_class: str | None,
    seed: int = 0,
    report: Callable[[str], None] | None = None,
) -> Path:
    """Write a diffusers-style pipeline folder holding every upstream part the conversions read.

    A folder per part (`folder/<subfolder>/`, written by the upstream library's `save_pretrained`),
    the stand-ins of the conversions' assets (tokenizers, scheduler config), and `model_index.json`
    naming `pipeline_class` when the family is a diffusers pipeline.

    Full-size parts are saved in float16 (as the Hub's fp16 variants), one model in memory at a time.
    """
    folder.mkdir(parents=True, exist_ok=True)
    index: dict[str, object] = {"_class_name": pipeline_class}
    done: set[str] = set()
    for conversion in conversions:
        configs = conversion.synthetic_configs(size)
        for part in conversion.parts:
            if part.subfolder in done:
                continue
            if report is not None:
                report(f"writing synthetic {part.subfolder} ({size} size, {part.library_class})")
            _write_part(
                part, configs[part.subfolder], folder / part.subfolder, size, _part_seed(seed, part.subfolder)
            )
            index[part.subfolder] = part.library_class.split(".", 1)
            done.add(part.subfolder)
        for asset in conversion.assets:
            if asset.write_synthetic is not None and asset.subfolder not in done:
                asset.write_synthetic(folder / asset.subfolder, size)
                done.add(asset.subfolder)
    if pipeline_class is not None:
        (folder / "model_index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return folder


def _part_seed(seed: int, subfolder: str) -> int:
    """A part's seed depends on its name only, so its weights do not change with what else is written."""
    return seed * 1_000_003 + zlib.crc32(subfolder.encode())


def _quiet_upstream_progress_bars() -> None:
    # save_pretrained draws a "Writing model shards" bar per model; ours reports what matters.
    import diffusers.utils.logging
    import transformers.utils.logging

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()


def _write_part(part: UpstreamPart, config: dict[str, object], folder: Path, size: Size, seed: int) -> None:
    _quiet_upstream_progress_bars()
    torch.manual_seed(seed)
    model = part.build(dict(config))
    if size == "full":
        model = model.to(torch.float16)
    model.save_pretrained(folder)  # pyright: ignore[reportCallIssue]
    del model
    # Free gigabytes before the next part; for a tiny part a collection costs more than it frees.
    if size == "full":
        gc.collect()
    if part.hub_key is not None:
        _rename_to_hub_layout(find_weights(folder, part), part)


def _rename_to_hub_layout(path: Path, part: UpstreamPart) -> None:
    """Rewrite a saved weights file with the Hub's tensor names (streamed, atomic)."""
    assert part.hub_key is not None
    rename = part.hub_key
    with open_checkpoint(path) as reader:
        plans = [
            TensorPlan(rename(key), reader.shape(key), reader.dtype(key), _getter(reader.get, key))
            for key in reader.keys()
        ]
        write_safetensors(path, plans, reader.metadata)


def _getter(get: Callable[[str], torch.Tensor], key: str) -> Callable[[], torch.Tensor]:
    return lambda: get(key)


__all__ = ["write_synthetic_pipeline"]

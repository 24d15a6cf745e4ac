"""The two things people do with a LoRA file: convert it to our format, or load it into a model.

convert_lora("style.safetensors", Path("out"), out=Path("out/lora"))  # base: a `zoo convert` output folder
load_lora(unet, "style.safetensors", name="style", scale=0.8)          # any supported format
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from converters.lora.base import LoraBase, is_family_name, model_base, resolve_base
from converters.lora.files import write_zoo_lora, zoo_lora_weights
from converters.lora.formats import PEFT_CONFIG_NAME, LoraFile, read_lora
from converters.lora.mapping import MappedLora, map_lora
from converters.lora.record import record_lora_run
from zoo import fluxion as fl
from zoo.configs import config_digest
from zoo.errors import ConfigError
from zoo.lora import inject_lora


@dataclass(frozen=True)
class LoraConversionResult:
    """What `convert_lora` wrote (or would write, on a dry run).

    Attributes:
        source: The LoRA file.
        source_sha256: Its sha256.
        source_files: Every file read: the LoRA, and PEFT's `adapter_config.json` when it was used.
        format: The format found from its keys.
        kinds: How many entries of each kind (`LoRA`, `LoHa`, `LoKr`, `full`, `norm`, `DoRA (LoRA)`...).
        alpha: How alpha was found and applied (folded into the tensors with the scale).
        base: The base, in words.
        family: The base's family.
        base_kind: What BASE was: `family` (a name), `folder` (a path), `memory` (a LoraBase object).
        base_source: The family name or the folder as given; None for a base in memory.
        base_models: For each of our models the LoRA changes: `component`, `conversion` (registry
            name), `config_sha256`, `keymap_sha256` (as in the output's header metadata).
        output: The file written (or that would be).
        sha256: Its sha256 (None on a dry run).
        bytes: Its size (planned tensor bytes on a dry run).
        tensors: Tensors in it; params: values in them; dtype: their dtype(s), `+`-joined.
        entries: LoRA entries placed; layers: layers changed per component; ranks: distinct ranks.
        scale: The scale folded in.
        manifest: `OUT/manifest.json`, where the conversion was recorded (None on a dry run).
    """

    source: Path
    source_sha256: str
    format: str
    base: str
    family: str
    output: Path
    sha256: str | None
    bytes: int
    tensors: int
    entries: int
    layers: dict[str, int]
    ranks: list[int]
    scale: float
    seconds: float
    params: int
    dtype: str
    alpha: str
    source_files: list[Path]
    kinds: dict[str, int]
    base_kind: str
    base_source: str | None
    base_models: list[dict[str, str]]
    dry_run: bool = False
    manifest: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data.update(source=str(self.source), output=str(self.output), seconds=round(self.seconds, 3))
        data["source_files"] = [str(path) for path in self.source_files]
        data["manifest"] = str(self.manifest) if self.manifest else None
        return data


def convert_lora(
    file: str | Path, base: str | Path | LoraBase, *, out: Path, scale: float = 1.0, dry_run: bool = False
) -> LoraConversionResult:
    """Convert a LoRA file (kohya, LyCORIS, diffusers or PEFT; any kind of update) into our format,
    as `OUT/<file stem>.safetensors`.

    Args:
        file: The LoRA file.
        base: `sdxl` / `sd15` (full-size configs), a `zoo convert` output folder, a diffusers pipeline
            folder, or a resolved `LoraBase`.
        out: The output folder.
        scale: Folded into the weights, on top of each entry's alpha / rank (1 for files with DoRA).
        dry_run: Read, place and check everything; write nothing.

    Unless `dry_run`, the conversion is recorded in `OUT/manifest.json` as the entry `lora/<file stem>`
    (created, or merged with the entries already there; see `converters.lora.record.record_lora_run`).

    Raises:
        FormatError, TensorValueError: The file is not a LoRA zoo reads, or holds bad values.
        CoverageError: Some entries cannot be placed on the base (all are listed).
        ConfigError: The base cannot be resolved, the output would overwrite the input, or a scale
            other than 1 is asked of a DoRA.
    """
    started = time.perf_counter()
    lora = read_lora(file)
    if lora.format == "zoo":
        raise ConfigError("this LoRA is already in zoo's format", file=lora.path, hint="load it as it is")
    resolved = base if isinstance(base, LoraBase) else resolve_base(base)
    mapped = map_lora(lora, resolved, scale=scale)
    output = Path(out) / f"{lora.path.stem}.safetensors"
    if output.resolve() == lora.path.resolve():
        raise ConfigError("the output would overwrite the input", file=output, hint="pass another --out")
    summary = None
    if not dry_run:
        output.parent.mkdir(parents=True, exist_ok=True)
        summary = write_zoo_lora(output, mapped)
    result = _result(lora, mapped, base, output, summary, started, dry_run)
    return result if dry_run else _with_manifest(result)


def _result(
    lora: LoraFile,
    mapped: MappedLora,
    base: str | Path | LoraBase,
    output: Path,
    summary: Any,
    started: float,
    dry_run: bool,
) -> LoraConversionResult:
    plans = mapped.plans()
    layers: dict[str, int] = {}
    for placed in mapped.placed:
        layers[placed.placement.component] = layers.get(placed.placement.component, 0) + 1
    planned_bytes = sum(math.prod(plan.shape) * plan.dtype.itemsize for plan in plans)
    base_kind, base_source = _base_given(base)
    return LoraConversionResult(
        source=lora.path,
        source_sha256=lora.sha256,
        format=lora.format,
        base=mapped.base.description,
        family=mapped.base.family,
        output=output,
        sha256=summary.sha256 if summary else None,
        bytes=summary.byte_count if summary else planned_bytes,
        tensors=len(plans),
        entries=len(mapped.placed),
        layers=dict(sorted(layers.items())),
        ranks=mapped.ranks,
        scale=mapped.scale,
        seconds=time.perf_counter() - started,
        params=sum(math.prod(plan.shape) for plan in plans),
        dtype="+".join(sorted({str(plan.dtype).removeprefix("torch.") for plan in plans})),
        alpha=alpha_handling(lora),
        source_files=_source_files(lora),
        kinds=lora.kinds,
        base_kind=base_kind,
        base_source=base_source,
        base_models=_base_models(mapped),
        dry_run=dry_run,
    )


def _base_given(base: str | Path | LoraBase) -> tuple[str, str | None]:
    """What BASE was, as `resolve_base` reads it: a family name, else a folder; or a model in memory."""
    if isinstance(base, LoraBase):
        return "memory", None
    if is_family_name(str(base)):
        return "family", str(base)
    return "folder", str(base)


def _base_models(mapped: MappedLora) -> list[dict[str, str]]:
    """The base's models the LoRA changes, as its header metadata names them (traces are cached)."""
    models: list[dict[str, str]] = []
    for model in mapped.base.models:
        if model.component in mapped.components:
            index = model.index()
            models.append(
                {
                    "component": model.component,
                    "conversion": model.conversion.name,
                    "config_sha256": index.config_sha256,
                    "keymap_sha256": index.keymap_sha256,
                }
            )
    return models


def _source_files(lora: LoraFile) -> list[Path]:
    """The files the conversion read: the LoRA, and PEFT's adapter_config.json when its alphas came from it."""
    config = lora.path.parent / PEFT_CONFIG_NAME
    used_config = lora.format == "peft" and "" in lora.adapter_config and config.is_file()
    return [lora.path, config] if used_config else [lora.path]


def alpha_handling(lora: LoraFile) -> str:
    """How a file's alphas become each entry's factor (`converters.lora.factors.entry_factor`), in words."""
    settings = [s for s in lora.adapter_config.values() if s]
    divisor = "sqrt(rank) (rsLoRA)" if any(s.get("use_rslora") for s in settings) else "rank"
    if settings:
        where = PEFT_CONFIG_NAME if lora.format == "peft" else "the header's lora_adapter_metadata"
        fallback = f"lora_alpha / alpha_pattern from {where}: factor alpha / {divisor}"
    else:
        fallback = "no alpha: factor 1"
    scaled = [entry for entry in lora.entries if entry.kind not in ("full", "norm")]
    stored = sum(1 for entry in scaled if entry.alpha_key is not None)
    if not scaled:
        return "full and norm diffs only: factor 1; the scale folded in"
    if stored == len(scaled):
        how = f"an alpha tensor in every entry: factor alpha / {divisor}"
    elif stored:
        how = f"an alpha tensor in {stored} of {len(scaled)} entries: factor alpha / {divisor}; the others {fallback}"
    else:
        how = fallback
    diffs = " (full and norm diffs: factor 1)" if len(scaled) < len(lora.entries) else ""
    return f"{how}{diffs}; folded in with the scale"


def record_lora_in_manifest(result: LoraConversionResult) -> Path | None:
    """Record a converted LoRA in `OUT/manifest.json` beside its output, as the entry `lora/<file stem>`.

    Entries already there (model conversions, other LoRAs) are kept; the update is locked and atomic,
    like `zoo convert`'s. Returns the manifest's path, or None for a dry run (nothing to record).
    """
    return record_lora_run(result)


def _with_manifest(result: LoraConversionResult) -> LoraConversionResult:
    manifest = record_lora_in_manifest(result)
    if manifest is None:
        return result
    return LoraConversionResult(**{**result.__dict__, "manifest": manifest})


# -- into a model -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedLora:
    """What `load_lora` put into a model.

    Attributes:
        name: The LoRA's name in the model.
        format: The file's format.
        component: Our component the model is (`unet`, `text_encoder`).
        layers: Layers that got the LoRA.
        skipped: Entries of the file for other components (e.g. text encoder entries, loading into a UNet).
        scale: The scale it runs at.
    """

    name: str
    format: str
    component: str
    layers: int
    skipped: int
    scale: float
    adapters: list[fl.LoraAdapter] = field(repr=False, default_factory=list)


def load_lora(
    model: nn.Module, source: str | Path, *, name: str | None = None, scale: float = 1.0
) -> LoadedLora:
    """Read a LoRA file of any supported format (ours included) and inject it into a chain model.

    Entries for the model's component(s) must all land on a layer, or nothing is injected; entries
    for other components are counted as skipped. `scale` is the run-time scale (change it with
    `zoo.lora.set_lora_scale`); alpha / rank is folded into the weights.
    """
    if not isinstance(model, fl.Chain):
        raise ConfigError(f"LoRAs go into chain models, not a {type(model).__name__}")
    lora = read_lora(source)
    base = model_base(model)
    component = base.models[0].component
    lora_name = name or lora.path.stem
    if lora.format == "zoo":
        weights = zoo_lora_weights(lora, component, config_digest(model.config))
        skipped = 0
    else:
        mapped = map_lora(lora, base, components=base.lora_components)
        weights, skipped = mapped.weights(component), len(mapped.skipped)
    if not weights:
        raise ConfigError(f"this LoRA changes nothing in a {component}", file=lora.path)
    adapters = inject_lora(model, lora_name, weights, scale)
    return LoadedLora(lora_name, lora.format, component, len(adapters), skipped, scale, adapters)


def load_lora_into(
    models: Sequence[nn.Module], source: str | Path, *, name: str | None = None, scale: float = 1.0
) -> list[LoadedLora]:
    """`load_lora` into each of a pipeline's models (a UNet, a text encoder) that the file changes.

    A file changing only some of them is fine; one that changes none is an error, and so is any entry
    that lands nowhere (as `load_lora` checks for each model).
    """
    loaded: list[LoadedLora] = []
    for model in models:
        try:
            loaded.append(load_lora(model, source, name=name, scale=scale))
        except ConfigError as error:
            if "changes nothing" not in error.message:
                raise
    if not loaded:
        raise ConfigError("this LoRA changes none of the models", file=source)
    return loaded


__all__ = [
    "LoadedLora",
    "LoraConversionResult",
    "alpha_handling",
    "convert_lora",
    "load_lora",
    "load_lora_into",
    "record_lora_in_manifest",
]

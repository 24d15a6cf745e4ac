"""The two things people do with a LoRA file: convert it to our format, or load it into a model.

convert_lora("style.safetensors", "sdxl", out=Path("out/lora"))       # -> out/lora/style.safetensors
load_lora(unet, "style.safetensors", name="style", scale=0.8)          # any supported format
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from converters.lora.base import LoraBase, model_base, resolve_base
from converters.lora.files import write_zoo_lora, zoo_lora_weights
from converters.lora.formats import LoraFile, read_lora
from converters.lora.mapping import MappedLora, map_lora
from zoo import fluxion as fl
from zoo.configs import config_digest
from zoo.errors import ConfigError
from zoo.lora import inject_lora


@dataclass(frozen=True)
class LoraConversionResult:
    """What `convert_lora` wrote (or would write, on a dry run)."""

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
    dry_run: bool = False
    manifest: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data.update(source=str(self.source), output=str(self.output), seconds=round(self.seconds, 3))
        data["manifest"] = str(self.manifest) if self.manifest else None
        return data


def convert_lora(
    file: str | Path, base: str | Path | LoraBase, *, out: Path, scale: float = 1.0, dry_run: bool = False
) -> LoraConversionResult:
    """Convert a LoRA file (kohya, LoCon, diffusers or PEFT) into our format, as `OUT/<file stem>.safetensors`.

    Args:
        file: The LoRA file.
        base: `sdxl` / `sd15` (full-size configs), a `zoo convert` output folder, a diffusers pipeline
            folder, or a resolved `LoraBase`.
        out: The output folder.
        scale: Folded into the weights, on top of each entry's alpha / rank.
        dry_run: Read, place and check everything; write nothing.

    Raises:
        FormatError, TensorValueError: The file is not a LoRA zoo reads, or holds bad values.
        CoverageError: Some entries cannot be placed on the base (all are listed).
        ConfigError: The base cannot be resolved, or the output would overwrite the input.
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
    result = _result(lora, mapped, output, summary, started, dry_run)
    return result if dry_run else _with_manifest(result)


def _result(
    lora: LoraFile, mapped: MappedLora, output: Path, summary: Any, started: float, dry_run: bool
) -> LoraConversionResult:
    plans = mapped.plans()
    layers: dict[str, int] = {}
    for placed in mapped.placed:
        layers[placed.placement.component] = layers.get(placed.placement.component, 0) + 1
    planned_bytes = sum(_numel(plan.shape) * plan.dtype.itemsize for plan in plans)
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
        dry_run=dry_run,
    )


def _numel(shape: tuple[int, ...]) -> int:
    count = 1
    for size in shape:
        count *= size
    return count


def record_lora_in_manifest(result: LoraConversionResult) -> Path | None:
    """HOOK, not wired yet: record a converted LoRA in `OUT/manifest.json`.

    `zoo.manifest` (v1) describes model outputs only: an entry needs a registry name `zoo verify
    --reproduce` can convert again, a model target with its config, and one key map. A LoRA has none
    of these (its key is the source file, its target is a base of one or two models), so writing one
    now would make `zoo verify` fail on the whole folder. When the manifest gains a LoRA entry kind,
    call it here with `result.to_dict()` (source path and sha256, output file, sha256, size, tensors,
    base family, source format, ranks, scale): returns the manifest's path.
    """
    del result
    return None


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


__all__ = ["LoadedLora", "LoraConversionResult", "convert_lora", "load_lora", "record_lora_in_manifest"]

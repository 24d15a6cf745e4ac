"""Convert one declared component: trace on meta, check the files, stream the output.

source files ──> upstream tensors (mmap, one at a time) ──> key map ──> streaming writer
                                                           (traced on meta)   OUT/NAME/model.safetensors
                                                                              OUT/NAME/config.json
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from converters._checkpoints import TensorPlan, WriteSummary, write_safetensors
from converters._convert import keymap_cache
from converters._convert.assets import carry_assets
from converters._convert.progress import ComponentProgress
from converters._convert.sources import FolderSource, Source
from converters._convert.upstream_tensors import UpstreamTensors, check_against_key_map, open_folder_tensors
from converters._single_file.replay import open_single_file_tensors
from converters._tracing import KeyMap, trace_key_map
from converters.declaration import Conversion, UpstreamConfigs, upstream_model
from zoo.configs import config_to_dict, qualified_name
from zoo.errors import ConfigError, TensorValueError
from zoo.files import write_text_atomic
from zoo.formats import COMPONENT_KEY, CONFIG_NAME, FORMAT_KEY, KEYMAP_KEY, OUTPUT_FORMAT, WEIGHTS_NAME


@dataclass(frozen=True)
class TracedConversion:
    """A conversion's key map for one set of upstream configs, traced on meta."""

    conversion: Conversion
    upstream_configs: UpstreamConfigs
    config: Any
    keymap: KeyMap
    model_class: str
    seconds: float
    from_cache: bool = False
    warnings: tuple[str, ...] = ()


def trace_conversion(
    conversion: Conversion,
    configs: UpstreamConfigs,
    use_cache: bool = True,
    allow_family_mismatch: bool = False,
) -> TracedConversion:
    """Derive our config, then the key map: from the cache, or by building both models on meta and tracing.

    A source whose config is not of the conversion's family (`Conversion.family_check`) is refused, or
    with `allow_family_mismatch` converted with a warning saying what differs.
    """
    started = time.perf_counter()
    config = conversion.derive_config(configs)
    warnings = _family_warnings(conversion, config, allow_family_mismatch)
    cached = keymap_cache.load(conversion.name, configs) if use_cache else None
    if cached is not None:
        seconds = time.perf_counter() - started
        keymap, model_class = cached.keymap, cached.model_class
        return TracedConversion(conversion, configs, config, keymap, model_class, seconds, True, warnings)
    with torch.device("meta"):
        upstream = upstream_model(conversion, configs)
        target = conversion.build_target(config)
        inputs = conversion.example_inputs(config, "meta", None)
    keymap = trace_key_map(
        upstream,
        target,
        lambda model: conversion.run_upstream(model, inputs),
        lambda model: conversion.run_target(model, inputs),
        conversion.overrides(config),
    )
    model_class = qualified_name(type(target))
    if use_cache:
        keymap_cache.store(conversion.name, configs, keymap, model_class)
    seconds = time.perf_counter() - started
    return TracedConversion(conversion, configs, config, keymap, model_class, seconds, warnings=warnings)


def _family_warnings(conversion: Conversion, config: Any, allow_family_mismatch: bool) -> tuple[str, ...]:
    problem = conversion.family_check(config)
    if problem is None:
        return ()
    if not allow_family_mismatch:
        raise ConfigError(
            f"the source is not a {conversion.name} checkpoint: {problem}",
            hint="if that is what you want, convert it anyway with --allow-family-mismatch",
        )
    return (f"converted as {conversion.name} although {problem} (--allow-family-mismatch)",)


@dataclass(frozen=True)
class ComponentResult:
    """What converting one component produced (or would produce, on a dry run)."""

    name: str
    folder: Path
    dtype: str
    tensors: int
    params: int
    bytes: int
    sha256: str | None
    seconds: float
    keymap_digest: str
    model_class: str
    source_files: list[Path]
    dry_run: bool = False
    warnings: list[str] = field(default_factory=list)
    assets: dict[str, str] = field(default_factory=dict)  # file (relative to `folder`) -> its role
    source_roles: dict[str, str] = field(default_factory=dict)  # source file -> role, for non-model files
    # Where the time went: `trace` (config, key map), then the writer's stages (see WriteSummary.seconds).
    stages: dict[str, float] = field(default_factory=dict)
    copied_tensors: int = 0  # tensors streamed file to file, their source bytes unchanged

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "folder": str(self.folder),
            "dtype": self.dtype,
            "tensors": self.tensors,
            "params": self.params,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "seconds": round(self.seconds, 3),
            "keymap_digest": self.keymap_digest,
            "model_class": self.model_class,
            "source_files": [str(path) for path in self.source_files],
            "dry_run": self.dry_run,
            "warnings": self.warnings,
            "assets": self.assets,
            "stages": self.stages,
            "copied_tensors": self.copied_tensors,
        }


@dataclass(frozen=True)
class BasedConversionResult:
    """What a conversion checked against a base wrote (`zoo convert ip-adapter`, `hq-sam`), or would
    write on a dry run: the source file, the conversion it was read as, the base, the component's
    result and the manifest that records it."""

    source: Path
    conversion: str
    base: str
    result: ComponentResult
    manifest: Path | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": str(self.source),
            "conversion": self.conversion,
            "base": self.base,
            "manifest": str(self.manifest) if self.manifest else None,
            **self.result.to_dict(),
        }


@contextmanager
def open_upstream(
    conversion: Conversion, source: Source
) -> Iterator[tuple[UpstreamConfigs, UpstreamTensors]]:
    """Upstream configs and tensors of a source, whatever its layout."""
    if isinstance(source, FolderSource):
        with open_folder_tensors(conversion, source) as tensors:
            yield source.configs, tensors
    else:
        with open_single_file_tensors(conversion, source) as (configs, tensors):
            yield configs, tensors


def convert_component(
    conversion: Conversion,
    source: Source,
    out: Path,
    *,
    dtype: torch.dtype | None = None,
    allow_nonfinite: bool = False,
    durable: bool = False,
    allow_family_mismatch: bool = False,
    dry_run: bool = False,
    progress: ComponentProgress | None = None,
) -> ComponentResult:
    """Convert `source` into `out/<name>/model.safetensors` + `config.json` (+ the assets it carries).

    Nothing is written on a dry run or on any error (the writer is atomic; the assets are checked
    before anything is written; config.json is written last). `progress` hears the plan's size, then
    each tensor written.
    """
    started = time.perf_counter()
    with open_upstream(conversion, source) as (configs, tensors):
        traced = trace_conversion(conversion, configs, allow_family_mismatch=allow_family_mismatch)
        check_against_key_map(tensors, traced.keymap, conversion.family)
        plans = _plans(traced.keymap, tensors, dtype)
        folder = out / conversion.name
        metadata = _metadata(traced)
        carried = carry_assets(conversion, source)
        warnings = [*traced.warnings, *_warnings(conversion, plans), *carried.warnings]
        if dry_run:
            summary = None
        else:
            folder.mkdir(parents=True, exist_ok=True)
            if progress is not None:
                progress.start(sum(_plan_bytes(plan) for plan in plans), len(plans))
            try:
                summary = write_safetensors(
                    folder / WEIGHTS_NAME,
                    plans,
                    metadata,
                    allow_nonfinite=allow_nonfinite,
                    progress=progress.advance if progress is not None else None,
                    durable=durable,
                )
            except TensorValueError as error:
                raise _blame_source(error, traced.keymap, tensors) from None
            carried.write(folder, durable=durable)
            write_json_atomic(folder / CONFIG_NAME, output_config(traced, plans), durable=durable)
    result = _result(conversion, folder, plans, summary, traced, source, started, warnings, dry_run)
    return replace(result, assets=carried.outputs(), source_roles=carried.source_roles())


def _blame_source(error: TensorValueError, keymap: KeyMap, tensors: UpstreamTensors) -> TensorValueError:
    """Name the source file and tensor a bad value came from, not only the output tensor."""
    entry = keymap.entry(error.tensor or "")
    if entry is None:
        return error
    source = tensors.tensors[entry.sources[0]]
    return TensorValueError(
        f"{error.message} (output tensor {error.tensor!r})",
        file=source.file,
        tensor=source.origin,
        hint=error.hint,
    )


def _plans(keymap: KeyMap, tensors: UpstreamTensors, dtype: torch.dtype | None) -> list[TensorPlan]:
    plans: list[TensorPlan] = []
    for target in keymap.target_keys():
        entry = keymap.entry(target)
        assert entry is not None  # target_keys() are exactly the produced keys
        out_dtype = dtype or tensors.tensors[entry.sources[0]].dtype
        shape = tuple(keymap.target_shapes[target])
        plans.append(TensorPlan(target, shape, out_dtype, _producer(keymap, tensors, target)))
    return plans


def _plan_bytes(plan: TensorPlan) -> int:
    return math.prod(plan.shape) * plan.dtype.itemsize


def _producer(keymap: KeyMap, tensors: UpstreamTensors, target: str) -> Callable[[], torch.Tensor]:
    return lambda: keymap.apply(tensors.get, target)


def _metadata(traced: TracedConversion) -> dict[str, str]:
    # Fixed keys only (no timestamps, versions or host names): the bytes depend on the input alone.
    return {
        COMPONENT_KEY: traced.conversion.name,
        FORMAT_KEY: str(OUTPUT_FORMAT),
        KEYMAP_KEY: traced.keymap.digest(),
    }


def _warnings(conversion: Conversion, plans: list[TensorPlan]) -> list[str]:
    if conversion.fp16_warning and any(plan.dtype == torch.float16 for plan in plans):
        return [conversion.fp16_warning]
    return []


def output_config(traced: TracedConversion, plans: list[TensorPlan]) -> dict[str, Any]:
    """The self-describing `config.json` written next to the weights."""
    config = traced.config
    dtypes = sorted({str(plan.dtype).removeprefix("torch.") for plan in plans})
    return {
        "zoo_format": OUTPUT_FORMAT,
        "component": traced.conversion.name,
        "model_class": traced.model_class,
        "config_class": qualified_name(type(config)),
        "config": config_to_dict(config),
        "dtype": dtypes[0] if len(dtypes) == 1 else dtypes,
        "keymap_sha256": traced.keymap.digest(),
    }


def write_json_atomic(path: Path, data: Any, *, durable: bool = False) -> None:
    """Write JSON (sorted keys, 2-space indent, trailing newline) atomically; fsynced if `durable`."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n", durable=durable)


def _result(
    conversion: Conversion,
    folder: Path,
    plans: list[TensorPlan],
    summary: WriteSummary | None,
    traced: TracedConversion,
    source: Source,
    started: float,
    warnings: list[str],
    dry_run: bool,
) -> ComponentResult:
    params = sum(math.prod(plan.shape) for plan in plans)
    nbytes = sum(_plan_bytes(plan) for plan in plans)
    dtypes = sorted({str(plan.dtype).removeprefix("torch.") for plan in plans})
    stages = {"trace": round(traced.seconds, 3), **(summary.seconds if summary else {})}
    return ComponentResult(
        name=conversion.name,
        folder=folder,
        dtype="+".join(dtypes),
        tensors=len(plans),
        params=params,
        bytes=summary.byte_count if summary else nbytes,
        sha256=summary.sha256 if summary else None,
        seconds=time.perf_counter() - started,
        keymap_digest=traced.keymap.digest(),
        model_class=traced.model_class,
        source_files=source.files,
        dry_run=dry_run,
        warnings=warnings,
        stages=stages,
        copied_tensors=summary.copied_tensors if summary else 0,
    )


__all__ = [
    "BasedConversionResult",
    "ComponentResult",
    "TracedConversion",
    "convert_component",
    "open_upstream",
    "output_config",
    "trace_conversion",
    "write_json_atomic",
]

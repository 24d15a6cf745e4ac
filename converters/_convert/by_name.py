"""`zoo convert NAME`: resolve the name and the source (or write a synthetic one), convert each conversion."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from converters import registry
from converters._convert.component import ComponentResult, convert_component
from converters._convert.pick import pick_conversion
from converters._convert.record import record_convert_run
from converters._convert.sources import Source, resolve_hub_source, resolve_source
from converters._convert.synthetic import write_synthetic_pipeline
from converters.declaration import Conversion, Size
from zoo.errors import ConfigError

SyntheticLayout = Literal["diffusers", "single-file"]
ProgressFactory = Callable[[Conversion, int], Any]  # (conversion, total bytes) -> a tqdm-like object


@dataclass(frozen=True)
class ConvertRun:
    """The outcome of one `zoo convert`."""

    results: list[ComponentResult]
    synthetic_source: Path | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "components": [result.to_dict() for result in self.results],
            "synthetic_source": str(self.synthetic_source) if self.synthetic_source else None,
        }


def convert(
    name: str,
    *,
    out: Path,
    source: str | None = None,
    revision: str | None = None,
    synthetic: Size | None = None,
    synthetic_layout: SyntheticLayout = "diffusers",
    dtype: torch.dtype | None = None,
    dry_run: bool = False,
    allow_nonfinite: bool = False,
    progress: ProgressFactory | None = None,
    report: Callable[[str], None] | None = None,
) -> ConvertRun:
    """Convert every component `name` designates (a family or one `family.component`).

    With `synthetic`, a seeded source is written first (under `out/synthetic-source/`): a diffusers
    pipeline folder, and with `synthetic_layout="single-file"` also the original single-file checkpoint
    made from it, which is then the source.
    """
    conversions = registry.resolve(name)
    if source is not None and synthetic is not None:
        raise ConfigError("--source and --synthetic exclude each other: pick one")
    if _alternatives(name):
        conversions = _one_alternative(name, source, revision, synthetic)
    synthetic_source = None
    if synthetic is not None:
        synthetic_source = _write_synthetic(conversions, synthetic, synthetic_layout, out, report)
        source = str(synthetic_source)
    results = [
        _convert_one(conversion, source, revision, out, dtype, dry_run, allow_nonfinite, progress)
        for conversion in conversions
    ]
    if not dry_run:
        record_convert_run(out, results, conversions, source=source, dtype=dtype)
    return ConvertRun(results, synthetic_source)


def _alternatives(name: str) -> bool:
    """Whether `name` is a family whose conversions are alternatives (the source picks one)."""
    return "." not in name and registry.family(name).picks_by_source


def _one_alternative(
    name: str, source: str | None, revision: str | None, synthetic: Size | None
) -> list[Conversion]:
    """The conversion of an alternatives family that `source` fits (all of them, from the Hub)."""
    family = registry.family(name)
    if synthetic is not None:
        names = ", ".join(c.name for c in family.declared)
        raise ConfigError(
            f"{family.name}'s conversions are alternatives: name one with --synthetic", hint=names
        )
    if source is None:
        return list(family.conversions)
    return [pick_conversion(family.declared, source, revision)]


def _write_synthetic(
    conversions: list[Conversion],
    size: Size,
    layout: SyntheticLayout,
    out: Path,
    report: Callable[[str], None] | None,
) -> Path:
    """A seeded source under `out/synthetic-source/`: a pipeline folder, or the single file made from it."""
    family = registry.family_of(conversions[0])
    folder = out / "synthetic-source" / f"{family.name}-{size}"
    if layout == "diffusers":
        # Only the parts asked for: a full-size UNet is 5 GB to write.
        return write_synthetic_pipeline(conversions, size, folder, family.pipeline_class, report=report)
    if family.single_file is None:
        raise ConfigError(f"{family.name} has no original single-file layout", hint="use --layout diffusers")
    if family.single_file.per_conversion:
        folder = _own_folder(conversions, size, out)
        write_synthetic_pipeline(conversions, size, folder, family.pipeline_class, report=report)
    else:
        write_synthetic_pipeline(family.conversions, size, folder, family.pipeline_class, report=report)
    return family.single_file.write_synthetic(folder, folder.with_suffix(".safetensors"))


def _own_folder(conversions: list[Conversion], size: Size, out: Path) -> Path:
    """Where the one conversion whose single file is its own writes its synthetic parts."""
    if len(conversions) != 1:
        names = ", ".join(c.name for c in conversions)
        raise ConfigError("each of these conversions reads its own single file: name one", hint=names)
    return out / "synthetic-source" / f"{conversions[0].name}-{size}"


def _convert_one(
    conversion: Conversion,
    source: str | None,
    revision: str | None,
    out: Path,
    dtype: torch.dtype | None,
    dry_run: bool,
    allow_nonfinite: bool,
    progress: ProgressFactory | None,
) -> ComponentResult:
    resolved = _resolve(conversion, source, revision)
    bar = progress(conversion, _total_bytes(resolved)) if progress else None
    try:
        return convert_component(
            conversion,
            resolved,
            out,
            dtype=dtype,
            allow_nonfinite=allow_nonfinite,
            dry_run=dry_run,
            progress=bar.update if bar is not None else None,
        )
    finally:
        if bar is not None:
            bar.close()


def _resolve(conversion: Conversion, source: str | None, revision: str | None) -> Source:
    if source is not None:
        return resolve_source(conversion, source, revision)
    return resolve_hub_source(conversion, conversion.hub_repo, revision)


def _total_bytes(source: Source) -> int:
    return sum(path.stat().st_size for path in source.files if path.is_file())


__all__ = ["ConvertRun", "convert"]

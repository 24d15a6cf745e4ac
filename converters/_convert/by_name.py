"""`zoo convert NAME`: resolve the name and the source (or write a synthetic one), convert each conversion."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from converters import registry
from converters._convert.component import ComponentResult, convert_component
from converters._convert.input_hashes import InputHashes
from converters._convert.pick import pick_conversion
from converters._convert.progress import ComponentProgress, RunProgress
from converters._convert.record import record_convert_run
from converters._convert.sources import FolderSource, Source, resolve_hub_source, resolve_source
from converters._convert.synthetic import write_synthetic_pipeline
from converters.declaration import Conversion, Size
from converters.family import Family
from zoo.errors import ConfigError

SyntheticLayout = Literal["diffusers", "single-file"]


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


@dataclass(frozen=True)
class _Options:
    """How every component of a run is converted."""

    out: Path
    dtype: torch.dtype | None
    dry_run: bool
    allow_nonfinite: bool
    allow_family_mismatch: bool
    progress: RunProgress | None
    durable: bool


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
    allow_family_mismatch: bool = False,
    progress: RunProgress | None = None,
    report: Callable[[str], None] | None = None,
    durable: bool = False,
    hashes: InputHashes | None = None,
) -> ConvertRun:
    """Convert every component `name` designates (a family or one `family.component`).

        With `synthetic`, a seeded source is written first (under `out/synthetic-source/<name>-<size>`): a
        diffusers pipeline folder, and with `synthetic_layout="single-file"` also the original single-file
        checkpoint made from it, which is then the source. `allow_family_mismatch` converts a source whose
        config is not of the family (an SD 1.5 autoencoder as SDXL's), with a warning, instead of refusing it.
    `durable` fsyncs every output before it is renamed into place (see `write_safetensors`).

        Every source is resolved before anything is converted; the source files are then hashed on a
        background thread while the components convert, and recorded in `out/manifest.json` at the end.
        `hashes` may have begun hashing files early (the caller closes it); those the run does not read
        are stopped.
    """
    conversions = registry.resolve(name)
    if source is not None and synthetic is not None:
        raise ConfigError("--source and --synthetic exclude each other: pick one")
    if "." not in name and registry.family(name).alternatives:
        conversions = _alternative(registry.family(name), source, revision, synthetic)
    synthetic_source = None
    if synthetic is not None:
        label = conversions[0].name if "." in name else registry.family(name).name
        synthetic_source = _write_synthetic(label, conversions, synthetic, synthetic_layout, out, report)
        source = str(synthetic_source)
    resolved = [(conversion, _resolve(conversion, source, revision)) for conversion in conversions]
    options = _Options(out, dtype, dry_run, allow_nonfinite, allow_family_mismatch, progress, durable)
    with InputHashes() if hashes is None else nullcontext(hashes) as run_hashes:
        read = [] if dry_run else [path for _, found in resolved for path in found.files]
        run_hashes.keep_only(read)
        run_hashes.start(read)
        if progress is not None:
            progress.start_run(_estimates(resolved))
        results = [_convert_one(conversion, found, options) for conversion, found in resolved]
        if not dry_run:
            record_convert_run(
                out, results, conversions, source=source, dtype=dtype, hashes=run_hashes, durable=durable
            )
    return ConvertRun(results, synthetic_source)


def _write_synthetic(
    label: str,
    conversions: list[Conversion],
    size: Size,
    layout: SyntheticLayout,
    out: Path,
    report: Callable[[str], None] | None,
) -> Path:
    """A seeded source under `out/synthetic-source/<label>-<size>`: a pipeline folder, or its single file.

    Named after what was asked (`sdxl`, `sam.vit_b`), so the sources of different conversions of one
    family never overwrite each other in one OUT (their manifest entries keep proving them).
    """
    family = registry.family_of(conversions[0])
    folder = out / "synthetic-source" / f"{label}-{size}"
    if layout == "diffusers":
        # Only the parts asked for: a full-size UNet is 5 GB to write.
        return write_synthetic_pipeline(conversions, size, folder, family.pipeline_class, report=report)
    if family.single_file is None:
        raise ConfigError(f"{family.name} has no original single-file layout", hint="use --layout diffusers")
    if family.single_file.per_conversion and len(conversions) != 1:
        names = ", ".join(c.name for c in conversions)
        raise ConfigError(
            f"each original {family.name} file holds one model: name one conversion ({names})",
            hint=f"e.g. zoo convert {conversions[0].name} --synthetic {size} --layout single-file",
        )
    held = conversions if family.single_file.per_conversion else family.conversions
    write_synthetic_pipeline(held, size, folder, family.pipeline_class, report=report)
    return family.single_file.write_synthetic(folder, folder.with_suffix(".safetensors"))


def _alternative(
    family: Family, source: str | None, revision: str | None, synthetic: Size | None
) -> list[Conversion]:
    """The conversion of an alternatives family that `source` is (all of them, from their Hub repos)."""
    if synthetic is not None:
        names = ", ".join(c.name for c in family.declared)
        raise ConfigError(
            f"{family.name}'s conversions are alternatives: name one with --synthetic", hint=names
        )
    if source is None:
        return list(family.conversions)
    return [pick_conversion(family.declared, source, revision)]


def _convert_one(conversion: Conversion, source: Source, options: _Options) -> ComponentResult:
    progress = ComponentProgress(options.progress, conversion.name) if options.progress else None
    try:
        return convert_component(
            conversion,
            source,
            options.out,
            dtype=options.dtype,
            allow_nonfinite=options.allow_nonfinite,
            allow_family_mismatch=options.allow_family_mismatch,
            dry_run=options.dry_run,
            durable=options.durable,
            progress=progress,
        )
    finally:
        if progress is not None:
            progress.finish()


def _resolve(conversion: Conversion, source: str | None, revision: str | None) -> Source:
    if source is not None:
        return resolve_source(conversion, source, revision)
    return resolve_hub_source(conversion, conversion.hub_repo, revision)


def _estimates(resolved: Sequence[tuple[Conversion, Source]]) -> Mapping[str, int]:
    """Bytes each component is expected to write: its weights' size, shared among the components reading them."""
    readers: dict[Path, int] = {}
    for _, source in resolved:
        for path in _weights(source):
            readers[path] = readers.get(path, 0) + 1
    return {
        conversion.name: sum(_size(path) // readers[path] for path in _weights(source))
        for conversion, source in resolved
    }


def _weights(source: Source) -> list[Path]:
    return list(source.weights.values()) if isinstance(source, FolderSource) else [source.path]


def _size(path: Path) -> int:
    """A weights file's size; a shard index stands for the shards beside it."""
    if path.name.endswith(".index.json"):
        return sum(shard.stat().st_size for shard in path.parent.glob("*.safetensors"))
    return path.stat().st_size if path.is_file() else 0


__all__ = ["ConvertRun", "SyntheticLayout", "convert"]

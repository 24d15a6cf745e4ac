"""`zoo convert hq-sam FILE --base BASE`: HQ-SAM's modules from a `sam_hq_vit_*.pth` file, for a SAM base.

The base is a `zoo convert` output of a SAM conversion (its folder) or a SAM conversion's name (its
full-size config). The file must fit it: the SAM it holds (HQ-SAM keeps SAM frozen) must have the
base's architecture and the HQ modules the base's widths, or nothing is written. When the base is a
folder, the file's SAM weights are also compared with the base's; a difference is reported (the masks
would differ from the reference's), not refused.

The output, `OUT/<FILE stem>.safetensors`, holds the HQ modules only, named as
`HQSAMAdapter.weights()` names them, with deterministic bytes and header metadata saying what it is for.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from converters import registry
from converters._checkpoints import (
    CheckpointReader,
    TensorPlan,
    WriteSummary,
    open_checkpoint,
    write_safetensors,
)
from converters._convert.component import trace_conversion
from converters.declaration import Conversion, Shape, UpstreamConfigs
from converters.hq_sam.names import is_hq_key, our_names
from converters.sam import CONVERSIONS
from converters.sam import FAMILY as SAM_FAMILY
from converters.sam.configs import derive_config
from converters.sam.original import IGNORED, SUBFOLDER, depths_of, transformers_names, upstream_configs
from converters.sam.sizes import release_of
from zoo.configs import config_digest, config_from_dict
from zoo.errors import ConfigError, FormatError, ZooError, few
from zoo.formats import FORMAT_KEY, WEIGHTS_NAME
from zoo.foundationals.segment_anything.hq_sam import HQSAMAdapter
from zoo.foundationals.segment_anything.model import SegmentAnything, SegmentAnythingConfig
from zoo.loading import read_output_config

HQ_FORMAT = "zoo.hq_sam/1"
METADATA_PREFIX = "zoo.hq_sam."


@dataclass(frozen=True)
class HQBase:
    """The SAM the HQ modules go into.

    Attributes:
        description: In words, for messages.
        conversion: The SAM conversion that makes it.
        config: Its config.
        weights: Its weights file, when the base is a converted output folder.
    """

    description: str
    conversion: Conversion
    config: SegmentAnythingConfig
    weights: Path | None = None


@dataclass(frozen=True)
class HQSamConversionResult:
    """What `convert_hq_sam` wrote (or would write, on a dry run)."""

    source: Path
    base: str
    output: Path
    sha256: str | None
    bytes: int
    tensors: int
    params: int
    dtype: str
    seconds: float
    dry_run: bool = False
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data.update(source=str(self.source), output=str(self.output), seconds=round(self.seconds, 3))
        return data


# -- the base ---------------------------------------------------------------------------------------------


def _sam_conversion(name: str, where: str) -> Conversion:
    found = next((c for c in CONVERSIONS if c.name == name), None)
    if found is None:
        sizes = ", ".join(c.name for c in CONVERSIONS)
        raise ConfigError(
            f"{where} is not a Segment Anything model", hint=f"pass one of {sizes}, or its output"
        )
    return found


def resolve_base(base: str | Path) -> HQBase:
    """A `zoo convert` output folder of a SAM conversion, or a SAM conversion's name (full-size config)."""
    path = Path(base)
    if path.is_dir():
        data = read_output_config(path)
        conversion = _sam_conversion(str(data.get("component")), f"the output in {path}")
        config = config_from_dict(SegmentAnythingConfig, data["config"])
        return HQBase(f"{conversion.name} converted in {path}", conversion, config, path / WEIGHTS_NAME)
    if str(base) == SAM_FAMILY.name:
        sizes = ", ".join(c.name for c in CONVERSIONS)
        raise ConfigError(
            f"name one size of {SAM_FAMILY.name}: {sizes}", hint="or pass a converted output folder"
        )
    conversion = registry.resolve(str(base))[0]
    _sam_conversion(conversion.name, repr(str(base)))
    config = conversion.derive_config(conversion.synthetic_configs("full"))
    return HQBase(f"{conversion.name} (full-size config)", conversion, config)


# -- checks ----------------------------------------------------------------------------------------------


def _in_file(error: ZooError, file: Path) -> ZooError:
    return type(error)(error.message, file=file, tensor=error.tensor, hint=error.hint)


def _describe(config: SegmentAnythingConfig) -> str:
    release = release_of(config)
    if release is not None:
        return release.describe()
    encoder = config.image_encoder
    return f"a SAM of width {encoder.embed_dim} and {encoder.depth} blocks"


def _architecture(config: SegmentAnythingConfig, eps: float) -> SegmentAnythingConfig:
    """The config with the decoder's block epsilon set (the original and transformers' differ in it)."""
    return dataclasses.replace(
        config, mask_decoder=dataclasses.replace(config.mask_decoder, layer_norm_eps=eps)
    )


def sam_configs(shapes: Mapping[str, Shape], file: Path) -> dict[str, dict[str, Any]]:
    """The upstream config of the SAM an HQ-SAM file holds, from its shapes."""
    try:
        return upstream_configs({key: shape for key, shape in shapes.items() if not is_hq_key(key)})
    except ZooError as error:
        raise _in_file(error, file) from None


def check_sam_names(shapes: Mapping[str, Shape], configs: UpstreamConfigs, file: Path) -> None:
    """Every tensor that is not an HQ module is one of an original SAM checkpoint's."""
    sam_keys = [key for key in shapes if not is_hq_key(key) and key not in IGNORED]
    try:
        transformers_names(sam_keys, depths_of(configs))
    except ZooError as error:
        raise _in_file(error, file) from None


def check_same_sam(found: SegmentAnythingConfig, base: HQBase, file: Path) -> None:
    """The file's SAM has the base's architecture."""
    eps = base.config.mask_decoder.layer_norm_eps
    if _architecture(found, eps) != _architecture(base.config, eps):
        raise ConfigError(
            f"this HQ-SAM file is for {_describe(found)}, the base {base.description} is {_describe(base.config)}",
            file=file,
            hint="pass the base of the same size (sam_hq_vit_b.pth goes with sam.vit_b)",
        )


def expected_shapes(base: HQBase) -> dict[str, Shape]:
    """The HQ modules' weights for the base, names and shapes (built on meta)."""
    with torch.device("meta"):
        adapter = HQSAMAdapter(SegmentAnything(base.config))
    return {key: tuple(tensor.shape) for key, tensor in adapter.weights().items()}


def check_hq_shapes(names: Mapping[str, str], shapes: Mapping[str, Shape], base: HQBase, file: Path) -> None:
    """Every HQ module of the base has its tensor in the file, with its shape."""
    expected = expected_shapes(base)
    missing = sorted(set(expected) - set(names.values()))
    if missing:
        raise FormatError(
            f"{len(missing)} HQ tensor(s) missing: {few(missing)}", file=file, tensor=missing[0]
        )
    extra = sorted(key for key, name in names.items() if name not in expected)
    if extra:
        raise FormatError(
            f"{len(extra)} HQ tensor(s) the base's HQ modules do not have: {few(extra)}",
            file=file,
            tensor=extra[0],
        )
    for key, name in sorted(names.items()):
        if tuple(shapes[key]) != expected[name]:
            raise FormatError(
                f"shape {tuple(shapes[key])} in the file, {expected[name]} for the base {base.description}",
                file=file,
                tensor=key,
            )


def differing_sam_weights(
    reader: CheckpointReader, configs: dict[str, dict[str, Any]], base: HQBase
) -> list[str]:
    """Our keys whose tensor in the file's SAM differs from the base's weights."""
    assert base.weights is not None
    traced = trace_conversion(base.conversion, configs)
    sam_keys = [key for key in reader.keys() if not is_hq_key(key) and key not in IGNORED]
    originals = {name: key for key, name in transformers_names(sam_keys, depths_of(configs)).items()}
    get: Callable[[str], torch.Tensor] = lambda name: reader.get(originals[name])  # noqa: E731
    differing: list[str] = []
    with safe_open(str(base.weights), "pt") as weights:
        for target in traced.keymap.target_keys():
            ours = weights.get_tensor(target)
            if not torch.equal(traced.keymap.apply(get, target).to(ours.dtype), ours):
                differing.append(target)
    return differing


# -- writing ---------------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def metadata(base: HQBase, source_sha256: str) -> dict[str, str]:
    """The output's header metadata (fixed keys, no paths or times: the bytes depend on the inputs only)."""
    return {
        FORMAT_KEY: HQ_FORMAT,
        f"{METADATA_PREFIX}base": base.conversion.name,
        f"{METADATA_PREFIX}base_config_sha256": config_digest(base.config),
        f"{METADATA_PREFIX}source_sha256": source_sha256,
    }


def _plans(reader: CheckpointReader, names: Mapping[str, str]) -> list[TensorPlan]:
    def getter(key: str) -> Callable[[], torch.Tensor]:
        return lambda: reader.get(key)

    by_name = sorted((name, key) for key, name in names.items())
    return [TensorPlan(name, reader.shape(key), reader.dtype(key), getter(key)) for name, key in by_name]


def convert_hq_sam(
    file: str | Path, base: str | Path, *, out: Path, dry_run: bool = False
) -> HQSamConversionResult:
    """Convert an HQ-SAM file's modules for `base` into `OUT/<file stem>.safetensors`.

    Raises:
        FormatError: The file holds no HQ-SAM modules, a module of unknown layout, or a tensor of the
            wrong shape for the base.
        ConfigError: The base is not a SAM, or the file is for another size of SAM.
    """
    started = time.perf_counter()
    source, resolved = Path(file), resolve_base(base)
    with open_checkpoint(source) as reader:
        shapes = {key: tuple(reader.shape(key)) for key in reader.keys()}
        hq_keys = [key for key in shapes if is_hq_key(key)]
        if not hq_keys:
            raise FormatError(
                "no HQ-SAM module in this file (mask_decoder.hf_token, hf_mlp, ...)",
                file=source,
                hint="a plain SAM checkpoint converts with `zoo convert sam --source FILE`",
            )
        try:
            names = our_names(hq_keys)
        except ZooError as error:
            raise _in_file(error, source) from None
        configs = sam_configs(shapes, source)
        check_sam_names(shapes, configs, source)
        check_same_sam(derive_config(configs[SUBFOLDER]), resolved, source)
        check_hq_shapes(names, shapes, resolved, source)
        warnings = _weight_warnings(reader, configs, resolved)
        plans = _plans(reader, names)
        output = out / f"{source.stem}.safetensors"
        summary = None if dry_run else _write(output, plans, metadata(resolved, _sha256(source)))
    return _result(source, resolved, output, plans, summary, started, dry_run, warnings)


def _weight_warnings(reader: CheckpointReader, configs: dict[str, dict[str, Any]], base: HQBase) -> list[str]:
    if base.weights is None:
        return []
    differing = differing_sam_weights(reader, configs, base)
    if not differing:
        return []
    return [
        f"{len(differing)} SAM tensor(s) of the file differ from the base's (e.g. {few(differing, 3)}): "
        "HQ-SAM was trained on other SAM weights, its masks will differ from the reference's"
    ]


def _write(output: Path, plans: list[TensorPlan], header: dict[str, str]) -> WriteSummary:
    output.parent.mkdir(parents=True, exist_ok=True)
    return write_safetensors(output, plans, header)


def _result(
    source: Path,
    base: HQBase,
    output: Path,
    plans: list[TensorPlan],
    summary: WriteSummary | None,
    started: float,
    dry_run: bool,
    warnings: list[str],
) -> HQSamConversionResult:
    planned = sum(math.prod(plan.shape) * plan.dtype.itemsize for plan in plans)
    return HQSamConversionResult(
        source=source,
        base=base.description,
        output=output,
        sha256=summary.sha256 if summary else None,
        bytes=summary.byte_count if summary else planned,
        tensors=len(plans),
        params=sum(math.prod(plan.shape) for plan in plans),
        dtype="+".join(sorted({str(plan.dtype).removeprefix("torch.") for plan in plans})),
        seconds=time.perf_counter() - started,
        dry_run=dry_run,
        warnings=warnings,
    )


__all__ = [
    "HQ_FORMAT",
    "HQBase",
    "HQSamConversionResult",
    "check_hq_shapes",
    "check_sam_names",
    "check_same_sam",
    "convert_hq_sam",
    "differing_sam_weights",
    "expected_shapes",
    "metadata",
    "resolve_base",
    "sam_configs",
]

"""The SAM base an HQ-SAM file is converted for, and the checks that the file fits it.

The base is a `zoo convert` output of a SAM conversion (its folder) or a SAM conversion's name (its
full-size config). HQ-SAM keeps SAM frozen, so the SAM a file holds must have the base's architecture,
and its HQ modules the base's widths, or nothing is written. When the base is a folder, the file's SAM
weights are also compared with the base's; a difference is reported (the masks would differ from the
reference's), not refused.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from converters import registry
from converters._checkpoints import CheckpointReader
from converters._convert.component import trace_conversion
from converters.declaration import Conversion, Shape, UpstreamConfigs
from converters.hq_sam.original import is_hq_key
from converters.sam import CONVERSIONS as SAM_CONVERSIONS
from converters.sam import FAMILY as SAM_FAMILY
from converters.sam.configs import derive_config
from converters.sam.original import IGNORED, SUBFOLDER, depths_of, transformers_names, upstream_configs
from converters.sam.sizes import release_of
from zoo.configs import config_from_dict
from zoo.errors import ConfigError, ZooError, few
from zoo.formats import WEIGHTS_NAME
from zoo.foundationals.segment_anything.hq_sam import HQSAMConfig
from zoo.foundationals.segment_anything.model import SegmentAnythingConfig
from zoo.loading import read_output_config


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


def _sam_conversion(name: str, where: str) -> Conversion:
    found = next((c for c in SAM_CONVERSIONS if c.name == name), None)
    if found is None:
        sizes = ", ".join(c.name for c in SAM_CONVERSIONS)
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
        sizes = ", ".join(c.name for c in SAM_CONVERSIONS)
        raise ConfigError(
            f"name one size of {SAM_FAMILY.name}: {sizes}", hint="or pass a converted output folder"
        )
    conversion = registry.resolve(str(base))[0]
    _sam_conversion(conversion.name, repr(str(base)))
    config = conversion.derive_config(conversion.synthetic_configs("full"))
    return HQBase(f"{conversion.name} (full-size config)", conversion, config)


# -- the file's SAM --------------------------------------------------------------------------------------


def in_file(error: ZooError, file: Path) -> ZooError:
    """The same error, naming the file."""
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
        raise in_file(error, file) from None


def check_sam_names(shapes: Mapping[str, Shape], configs: UpstreamConfigs, file: Path) -> None:
    """Every tensor that is not an HQ module is one of an original SAM checkpoint's."""
    sam_keys = [key for key in shapes if not is_hq_key(key) and key not in IGNORED]
    try:
        transformers_names(sam_keys, depths_of(configs))
    except ZooError as error:
        raise in_file(error, file) from None


def check_same_sam(configs: UpstreamConfigs, base: HQBase, file: Path) -> None:
    """The file's SAM has the base's architecture."""
    found = derive_config(configs[SUBFOLDER])
    eps = base.config.mask_decoder.layer_norm_eps
    if _architecture(found, eps) != _architecture(base.config, eps):
        raise ConfigError(
            f"this HQ-SAM file is for {_describe(found)}, the base {base.description} is {_describe(base.config)}",
            file=file,
            hint="pass the base of the same size (sam_hq_vit_b.pth goes with sam.vit_b)",
        )


def check_hq_widths(found: HQSAMConfig, base: HQBase, file: Path) -> None:
    """The file's HQ modules have the widths the base's SAM needs."""
    expected = HQSAMConfig.for_model(base.config)
    if (found.vit_dim, found.embed_dim) != (expected.vit_dim, expected.embed_dim):
        raise ConfigError(
            f"the HQ modules of this file are for {found.describe()}; the base {base.description} has "
            f"{expected.describe()}",
            file=file,
            hint="the file's HQ modules do not fit its own SAM: is it damaged?",
        )


# -- the base's weights ----------------------------------------------------------------------------------


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


def weight_warnings(reader: CheckpointReader, configs: dict[str, dict[str, Any]], base: HQBase) -> list[str]:
    """A warning when the base is a folder whose SAM weights are not the file's."""
    if base.weights is None:
        return []
    differing = differing_sam_weights(reader, configs, base)
    if not differing:
        return []
    return [
        f"{len(differing)} SAM tensor(s) of the file differ from the base's (e.g. {few(differing, 3)}): "
        "HQ-SAM was trained on other SAM weights, its masks will differ from the reference's"
    ]


__all__ = [
    "HQBase",
    "check_hq_widths",
    "check_sam_names",
    "check_same_sam",
    "differing_sam_weights",
    "in_file",
    "resolve_base",
    "sam_configs",
    "weight_warnings",
]

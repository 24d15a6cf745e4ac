"""`zoo convert ip-adapter FILE --base BASE`: an original IP-Adapter file, checked against a base, converted.

BASE says which UNet the adapter must fit: a family (its full-size UNet), a `zoo convert` output (a UNet
folder, or an output folder holding one), or an upstream source (a diffusers pipeline folder, its `unet`
folder, or a Hub pipeline repo, whose `unet/config.json` is read). The variant (base / plus / full-face,
token count, image feature width) is read from the file's shapes; the file must fit BASE's
cross-attentions, or nothing is written and the error names both. The output is the declared
conversion's: `OUT/ip_adapter.<variant>/` (`model.safetensors`, `config.json`), recorded in
`OUT/manifest.json` with the sha256 of the file read and of the files written.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from converters import registry
from converters._convert.component import BasedConversionResult, convert_component
from converters._convert.record import record_convert_run
from converters._convert.sources import SingleFileSource, read_config
from converters._single_file.replay import single_file_configs
from converters.clip_vision.transformers_layout import derive_image_encoder_config
from converters.declaration import Conversion
from converters.ip_adapter import FAMILY, KNOWN_BASES
from converters.ip_adapter.original import original_layout
from converters.stable_diffusion.unet import diffusers_unet_config
from zoo.configs import config_from_dict, import_model_class, qualified_name
from zoo.errors import ConfigError
from zoo.formats import CONFIG_NAME
from zoo.foundationals.clip.image_encoder import CLIPImageEncoderConfig
from zoo.foundationals.ip_adapter.ip_adapter import check_image_encoder
from zoo.foundationals.latent_diffusion.unet import UNet, UNetConfig
from zoo.hub import download_file

UNET_CLASS = "UNet2DConditionModel"
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
BASE_HINT = (
    "pass a family (its full-size UNet), a `zoo convert` output folder with a UNet, "
    "a diffusers pipeline folder or its unet folder, or a Hub pipeline repo"
)


@dataclass(frozen=True)
class UNetBase:
    """The UNet an IP-Adapter must fit: its diffusers config, and where it came from (for messages)."""

    unet: dict[str, Any]
    description: str


IPAdapterConversionResult = BasedConversionResult  # what it wrote, as every conversion checked against a base


def convert_ip_adapter(
    file: str | Path,
    base: str | Path,
    *,
    out: Path,
    image_encoder: str | Path | None = None,
    dtype: torch.dtype | None = None,
    dry_run: bool = False,
) -> IPAdapterConversionResult:
    """Convert an original IP-Adapter file for BASE (see the module docstring).

    Args:
        file: The `.bin` or `.safetensors` release.
        base: What its UNet must fit.
        out: The output folder.
        image_encoder: Optionally, an image encoder (a `zoo convert` output or a transformers folder)
            whose feature the adapter must read.
        dtype: The output dtype (default: the file's).
        dry_run: Check and plan everything; write nothing.

    Raises:
        ConfigError: BASE is not a UNet; the file is for another UNet or image encoder, or no declared
            variant; FaceID.
        FormatError, CoverageError: The file is not an IP-Adapter zoo reads, or is truncated.
    """
    source = SingleFileSource(Path(file))
    unet = resolve_unet_base(base)
    conversion = conversion_for(source, unet)
    if image_encoder is not None:
        config = conversion.derive_config(single_file_configs(conversion, source))
        check_image_encoder(config, image_encoder_config(Path(image_encoder)))
    result = convert_component(conversion, source, out, dtype=dtype, dry_run=dry_run)
    manifest = (
        None if dry_run else record_convert_run(out, [result], [conversion], source=source.path, dtype=dtype)
    )
    return IPAdapterConversionResult(source.path, conversion.name, unet.description, result, manifest)


def conversion_for(source: SingleFileSource, unet: UNetBase) -> Conversion:
    """The declared conversion of the file's variant, reading it as an adapter for `unet` only."""
    layout = original_layout((unet.unet,), unet.description, KNOWN_BASES)
    candidates = [replace(conversion, single_file=layout) for conversion in FAMILY.declared]
    config = candidates[0].derive_config(single_file_configs(candidates[0], source))  # the same for all
    reasons = []
    for candidate in candidates:
        misfit = candidate.family_check(config)
        if misfit is None:
            return candidate
        reasons.append(f"{candidate.name}: {misfit}")
    raise ConfigError(
        f"this IP-Adapter fits {unet.description}'s UNet but is no declared variant: {'; '.join(reasons)}",
        file=source.path,
    )


# -- the base --------------------------------------------------------------------------------------


def resolve_unet_base(base: str | Path) -> UNetBase:
    """BASE's UNet, as a diffusers config (see the module docstring)."""
    name = str(base).replace("-", "_")
    if name in registry.families():
        return UNetBase(_family_unet(name), f"{name}")
    path = Path(base)
    for folder in (path, path / "unet"):
        if (folder / CONFIG_NAME).is_file():
            found = _folder_unet(folder)
            if found is not None:
                return UNetBase(found, str(path))
    outputs = sorted(path.glob(f"*/{CONFIG_NAME}")) if path.is_dir() else []
    for config in outputs:
        found = _folder_unet(config.parent)
        if found is not None:
            return UNetBase(found, str(config.parent))
    if not path.exists() and REPO_ID.match(str(base)):
        return UNetBase(_hub_unet(str(base)), str(base))
    raise ConfigError(
        f"cannot find a UNet in {str(base)!r}", file=path if path.exists() else None, hint=BASE_HINT
    )


def _hub_unet(repo: str) -> dict[str, Any]:
    """A Hub pipeline's UNet config (`unet/config.json`, from the cache or the Hub)."""
    found = _folder_unet(download_file(repo, f"unet/{CONFIG_NAME}", None).parent)
    if found is None:
        raise ConfigError(f"{repo}'s unet/config.json is not a UNet2DConditionModel's", hint=BASE_HINT)
    return found


def _family_unet(name: str) -> dict[str, Any]:
    unets = [c for c in registry.family(name).conversions if c.build_target is UNet]
    if not unets:
        raise ConfigError(f"family {name!r} has no UNet for an IP-Adapter to go on", hint=BASE_HINT)
    return dict(unets[0].synthetic_configs("full")["unet"])


def _folder_unet(folder: Path) -> dict[str, Any] | None:
    """A UNet's diffusers config from a `zoo convert` output or a diffusers UNet folder, else None."""
    data = read_config(folder / CONFIG_NAME)
    if data.get("model_class") == qualified_name(UNet):
        return diffusers_unet_config(config_from_dict(UNetConfig, data["config"]))
    if data.get("_class_name") == UNET_CLASS:
        return {key: value for key, value in data.items() if not key.startswith("_")}
    return None


def image_encoder_config(folder: Path) -> CLIPImageEncoderConfig:
    """An image encoder's config, from a `zoo convert` output or a transformers folder."""
    data = read_config(folder / CONFIG_NAME)
    if "model_class" in data:
        config = config_from_dict(import_model_class(data["config_class"]), data["config"])
        if not isinstance(config, CLIPImageEncoderConfig):
            raise ConfigError(f"not an image encoder but a {type(config).__name__}", file=folder)
        return config
    return derive_image_encoder_config(json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8")))


__all__ = [
    "IPAdapterConversionResult",
    "UNetBase",
    "conversion_for",
    "convert_ip_adapter",
    "image_encoder_config",
    "resolve_unet_base",
]

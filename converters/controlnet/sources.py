"""Which ControlNet a `--source` holds (SD 1.5's or SDXL's), so that `zoo convert controlnet SOURCE`
converts what SOURCE is: a folder says it in its `config.json` (SDXL's has the added text/time
conditioning), an original file is SD 1.5's (lllyasviel released no SDXL ones)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from converters._convert.sources import read_config
from converters.controlnet.original import SUBFOLDER
from converters.controlnet.upstream import derive_controlnet_config
from converters.declaration import Conversion
from zoo.errors import ConfigError

CONFIG_FILE = "config.json"


def _config_file(folder: Path) -> Path | None:
    for candidate in (folder / CONFIG_FILE, folder / SUBFOLDER / CONFIG_FILE):
        if candidate.is_file():
            return candidate
    return None


def _fitting(conversions: Sequence[Conversion], config_file: Path) -> tuple[Conversion, ...]:
    config = derive_controlnet_config(read_config(config_file))
    return tuple(c for c in conversions if c.family_check(config) is None)


def conversions_for_source(conversions: Sequence[Conversion], source: str) -> tuple[Conversion, ...]:
    """The conversion a source holds; a source of no declared kind is an error naming the file."""
    path = Path(source)
    if path.is_file():
        return tuple(c for c in conversions if c.single_file is not None)
    config_file = _config_file(path) if path.is_dir() else None
    if config_file is None:
        if path.exists():
            raise ConfigError("no ControlNet here (no config.json, nor controlnet/config.json)", file=path)
        return tuple(c for c in conversions if c.hub_repo == source) or tuple(conversions[:1])
    held = _fitting(conversions, config_file)
    if not held:
        raise ConfigError("a ControlNet for a UNet no declared conversion fits", file=config_file)
    return held


__all__ = ["conversions_for_source"]

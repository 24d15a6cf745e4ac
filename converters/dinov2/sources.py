"""Which release a `--source` holds, so that `zoo convert dinov2 --source X` converts what X is.

A Hub repo id names its release; a transformers folder says it in its `config.json`; an original file
in its shapes. A folder holding several releases' folders (a synthetic source) holds each of them.
A model of no released size is converted by naming a conversion of its kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from converters._checkpoints import open_checkpoint
from converters._convert.sources import read_config
from converters.declaration import Conversion
from converters.dinov2.original import original_config
from converters.dinov2.recognizers import looks_transformers
from converters.dinov2.releases import describe, release_of_size
from converters.dinov2.transformers_config import derive_config
from zoo.errors import ConfigError, ZooError
from zoo.foundationals.dinov2 import DINOv2Config

CONFIG_FILE = "config.json"
FOLDER_HINT = "a transformers file: pass the folder holding it and its config.json"


def _config_of_file(path: Path) -> DINOv2Config:
    """The config of an original file; any other file is an error naming it."""
    with open_checkpoint(path) as reader:
        shapes = {key: reader.shape(key) for key in reader.keys()}
    try:
        return original_config(shapes)
    except ZooError as error:
        hint = FOLDER_HINT if looks_transformers(shapes) else error.hint
        raise type(error)(error.message, file=path, tensor=error.tensor, hint=hint) from None


def _pick(conversions: Sequence[Conversion], config: DINOv2Config, source: str) -> tuple[Conversion, ...]:
    release = release_of_size(config)
    if release is None:
        kind = [c.name for c in conversions if c.family_check(config) is None]
        raise ConfigError(
            f"{describe(config)}: no release has this size, so the source does not say which conversion it is",
            file=source,
            hint=f"name one of its kind: zoo convert {kind[0] if kind else 'dinov2.<size>'} --source {source}",
        )
    return tuple(c for c in conversions if c.name == release.name)


def _in_folder(conversions: Sequence[Conversion], folder: Path) -> tuple[Conversion, ...]:
    if (folder / CONFIG_FILE).is_file():
        try:
            config = derive_config(read_config(folder / CONFIG_FILE))
        except ZooError as error:
            raise type(error)(error.message, file=folder / CONFIG_FILE, hint=error.hint) from None
        return _pick(conversions, config, str(folder))
    held = tuple(c for c in conversions if (folder / c.parts[0].subfolder / CONFIG_FILE).is_file())
    if not held:
        raise ConfigError(
            "no DINOv2 folder here (no config.json, nor a folder per release)",
            file=folder,
            hint="pass a transformers folder (config.json + model.safetensors) or an original .pth file",
        )
    return held


def _in_repo(conversions: Sequence[Conversion], repo: str) -> tuple[Conversion, ...]:
    held = tuple(c for c in conversions if c.hub_repo == repo)
    if not held:
        repos = ", ".join(c.hub_repo for c in conversions)
        raise ConfigError(f"{repo} is not a DINOv2 repo zoo declares", hint=f"declared: {repos}")
    return held


def conversions_for_source(conversions: Sequence[Conversion], source: str) -> tuple[Conversion, ...]:
    """The conversions among `conversions` that `source` (a path or a Hub repo id) holds."""
    path = Path(source)
    if path.is_file():
        return _pick(conversions, _config_of_file(path), source)
    if path.is_dir():
        return _in_folder(conversions, path)
    return _in_repo(conversions, source)


__all__ = ["conversions_for_source"]

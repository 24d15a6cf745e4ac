"""Which T2I-Adapter a `--source` holds, so that `zoo convert t2i-adapter SOURCE` converts what it is:
a folder's `config.json` names its adapter type, an original file's keys tell full from light."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from converters._checkpoints import open_checkpoint
from converters._convert.sources import read_config
from converters.declaration import Conversion
from converters.t2i_adapter.original import is_light
from converters.t2i_adapter.upstream import SUBFOLDER, derive_t2i_config
from zoo.errors import ConfigError
from zoo.foundationals.t2i_adapter import T2IAdapterConfig

CONFIG_FILE = "config.json"


def _fitting(
    conversions: Sequence[Conversion], config: T2IAdapterConfig, where: Path
) -> tuple[Conversion, ...]:
    held = tuple(c for c in conversions if c.family_check(config) is None)
    if not held:
        raise ConfigError(f"a {config.kind} T2I-Adapter, which no declared conversion reads", file=where)
    return held


def conversions_for_source(conversions: Sequence[Conversion], source: str) -> tuple[Conversion, ...]:
    """The conversion a source holds; a source of no declared kind is an error naming it."""
    path = Path(source)
    if path.is_file():
        with open_checkpoint(path) as reader:
            light = is_light({key: reader.shape(key) for key in reader.keys()})
        kind = "light" if light else "full"
        return tuple(
            c for c in conversions if c.single_file is not None and c.family_check(_kind_only(kind)) is None
        )
    for candidate in (path / CONFIG_FILE, path / SUBFOLDER / CONFIG_FILE):
        if candidate.is_file():
            return _fitting(conversions, derive_t2i_config(read_config(candidate)), candidate)
    if path.exists():
        raise ConfigError("no T2I-Adapter here (no config.json, nor adapter/config.json)", file=path)
    return tuple(c for c in conversions if c.hub_repo == source) or tuple(conversions[:1])


def _kind_only(kind: str) -> T2IAdapterConfig:
    return T2IAdapterConfig.sd15_light() if kind == "light" else T2IAdapterConfig.sd15_full()


__all__ = ["conversions_for_source"]

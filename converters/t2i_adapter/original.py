"""TencentARC's original SD 1.4/1.5 adapter files (`t2iadapter_*_sd14v1.pth`): config from shapes,
layouts (full and light), recognizer and a writer for synthetic ones.

Full adapters (`Adapter`) hold a flat list of residual blocks, `body.<k>.block1/2` with `k = level ×
blocks per level + j`, an `in_conv` on a level's first block where the channels change, and `conv_in`;
the released ones have 2 residual blocks per level (`nums_rb=2`), which the shapes cannot show. Light
adapters (`Adapter_light`) hold `body.<i>.in_conv`, `body.<i>.body.<j>.block1/2` and `body.<i>.out_conv`.
Keys may carry an `adapter.` prefix (TencentARC's loader strips it). Both unshuffle the image by 8.
The mapping is a plain rename; it is recorded and replayed like the other single files.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from converters._checkpoints import TensorPlan, open_checkpoint, write_safetensors
from converters._single_file.shapes import ShapeReader
from converters.declaration import Shape, SingleFileLayout, UpstreamConfigs
from converters.family import Recognizer, SingleFileFormat
from converters.t2i_adapter.upstream import SUBFOLDER, derive_t2i_config, diffusers_t2i_config
from zoo.errors import ConfigError, FormatError
from zoo.foundationals.t2i_adapter import T2IAdapterConfig

FILE_PREFIX = "adapter."  # optional in the files
UPSTREAM_PREFIX = "adapter."  # diffusers' T2IAdapter holds everything under `adapter.`
RES_BLOCKS = 2  # the released full adapters' residual blocks per level
UNSHUFFLE = 8
_FULL = re.compile(r"body\.(\d+)\.(block1|block2|in_conv)\.(\w+)")
_LIGHT = re.compile(r"body\.(\d+)\.(?:body\.(\d+)\.(block1|block2)|(in_conv|out_conv))\.(\w+)")


def _strip(shapes: Mapping[str, Shape]) -> dict[str, Shape]:
    return {key.removeprefix(FILE_PREFIX): shape for key, shape in shapes.items()}


def is_light(shapes: Mapping[str, Shape]) -> bool:
    return "body.0.out_conv.weight" in _strip(shapes)


def is_full(shapes: Mapping[str, Shape]) -> bool:
    stripped = _strip(shapes)
    return "conv_in.weight" in stripped and "body.0.block1.weight" in stripped


def original_config(shapes: Mapping[str, Shape]) -> T2IAdapterConfig:
    """Our config of an original full or light adapter, from its shapes."""
    stripped = _strip(shapes)
    s = ShapeReader(stripped, "", "T2I-Adapter")
    if is_light(stripped):
        blocks = s.count(r"body\.(\d+)\.in_conv\.weight")
        channels = tuple(s(f"body.{i}.out_conv.weight")[0] for i in range(blocks - 1))
        return T2IAdapterConfig(
            in_channels=s("body.0.in_conv.weight")[1] // UNSHUFFLE**2,
            channels=channels,
            num_res_blocks=s.count(r"body\.0\.body\.(\d+)\.block1\.weight"),
            kind="light",
        )
    if not is_full(stripped):
        raise ConfigError("not an original T2I-Adapter (no conv_in and body.0.block1, nor body.0.out_conv)")
    residual = s.count(r"body\.(\d+)\.block1\.weight")
    if residual % RES_BLOCKS:
        raise s.fail("body", f"{residual} residual blocks do not make levels of {RES_BLOCKS}")
    channels = tuple(
        s(f"body.{level * RES_BLOCKS}.block1.weight")[0] for level in range(residual // RES_BLOCKS)
    )
    return T2IAdapterConfig(s("conv_in.weight")[1] // UNSHUFFLE**2, channels, RES_BLOCKS)


def _upstream_key(key: str, light: bool) -> str:
    key = key.removeprefix(FILE_PREFIX)
    if key.startswith("conv_in."):
        return UPSTREAM_PREFIX + key
    if light and (m := _LIGHT.fullmatch(key)):
        inner = f"resnets.{m[2]}.{m[3]}" if m[2] is not None else m[4]
        return f"{UPSTREAM_PREFIX}body.{m[1]}.{inner}.{m[5]}"
    if not light and (m := _FULL.fullmatch(key)):
        level, block = divmod(int(m[1]), RES_BLOCKS)
        inner = "in_conv" if m[2] == "in_conv" else f"resnets.{block}.{m[2]}"
        return f"{UPSTREAM_PREFIX}body.{level}.{inner}.{m[3]}"
    raise FormatError("a tensor the original T2I-Adapter layout has no place for", tensor=key)


def _to_upstream(tensors: Mapping[str, Any], _configs: UpstreamConfigs) -> Mapping[str, Any]:
    light = is_light({key: () for key in tensors})
    return {_upstream_key(key, light): tensor for key, tensor in tensors.items()}


def layout() -> SingleFileLayout:
    """The original layout (full or light, told by the keys)."""
    return SingleFileLayout(
        prefixes=("body.", "conv_in.", FILE_PREFIX),
        to_upstream=_to_upstream,
        upstream_configs=lambda shapes: {SUBFOLDER: diffusers_t2i_config(original_config(shapes))},
    )


# -- writing one from a diffusers folder ------------------------------------------------------------

_UPSTREAM = re.compile(r"adapter\.body\.(\d+)\.(?:resnets\.(\d+)\.(block1|block2)|(in_conv|out_conv))\.(\w+)")


def _original_key(key: str, light: bool) -> str:
    if key.startswith(UPSTREAM_PREFIX + "conv_in."):
        return key.removeprefix(UPSTREAM_PREFIX)
    m = _UPSTREAM.fullmatch(key)
    if m is None:
        raise FormatError("a T2IAdapter tensor the original layout has no place for", tensor=key)
    level, parameter = int(m[1]), m[5]
    if light:
        inner = f"body.{m[2]}.{m[3]}" if m[2] is not None else m[4]
        return f"body.{level}.{inner}.{parameter}"
    if m[4] == "in_conv":
        return f"body.{level * RES_BLOCKS}.in_conv.{parameter}"
    return f"body.{level * RES_BLOCKS + int(m[2])}.{m[3]}.{parameter}"


def write_synthetic(source_folder: Path, out_file: Path) -> Path:
    """An original adapter file from a folder holding a diffusers `adapter/` folder (full or light)."""
    from converters._convert.sources import read_config

    folder = source_folder / SUBFOLDER
    config = derive_t2i_config(read_config(folder / "config.json"))
    if config.kind == "full_xl" or (config.kind == "full" and config.num_res_blocks != RES_BLOCKS):
        raise ConfigError("no original file layout for this adapter", file=folder)
    weights = sorted(folder.glob("*.safetensors"))
    with open_checkpoint(weights[0]) as reader:
        plans = [
            TensorPlan(
                _original_key(key, config.kind == "light"),
                reader.shape(key),
                reader.dtype(key),
                _get(reader.get, key),
            )
            for key in reader.keys()
        ]
        write_safetensors(out_file, plans, {"zoo.synthetic": f"original T2I-Adapter, from {folder}"})
    return out_file


def _get(get: Callable[[str], torch.Tensor], key: str) -> Callable[[], torch.Tensor]:
    return lambda: get(key)


def recognizer(conversion: str) -> Recognizer:
    """Original full and light files; `conversion` names what converts them (the family picks which)."""
    return Recognizer(
        "an original SD 1.x T2I-Adapter (TencentARC's layout, full or light)",
        lambda shapes: is_full(shapes) or is_light(shapes),
        conversion,
    )


def single_file_format(conversion: str) -> SingleFileFormat:
    return SingleFileFormat(recognizer(conversion), write_synthetic, per_conversion=True)


__all__ = ["is_full", "is_light", "layout", "original_config", "single_file_format"]

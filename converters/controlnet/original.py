"""lllyasviel's original ControlNet files (`control_v11p_sd15_*.pth` / `.safetensors`): config from
shapes, layout, recognizer and a writer for synthetic ones.

Tensors sit under `control_model.`, named like the LDM UNet's encoder (`time_embed`, `input_blocks`,
`middle_block`) plus `input_hint_block` (the condition encoder, convolutions at even indices),
`zero_convs.<i>.0` and `middle_block_out.0`. v1.0 files (`control_sd15_*.pth`) also hold the whole SD
1.5 model under its own prefixes, which are not read. `to_upstream` is diffusers' own
`convert_controlnet_checkpoint`, recorded on meta and replayed per tensor.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from converters._checkpoints import CheckpointReader, TensorPlan, open_checkpoint, write_safetensors
from converters._single_file.shapes import ShapeReader
from converters.declaration import Shape, SingleFileLayout, UpstreamConfigs
from converters.family import Recognizer, SingleFileFormat, has_prefix
from converters.stable_diffusion.original_names import UNET_PREFIX
from converters.stable_diffusion.original_unet import UNetFamily, unet_config
from converters.stable_diffusion.original_writer import (
    Header,
    OriginalFile,
    OriginalTensor,
    original_tensors,
    unet_tensors,
)
from zoo.errors import FormatError

PREFIX = "control_model."
SUBFOLDER = "controlnet"
HINT_BLOCK = "input_hint_block"

# What the shapes do not show, from lllyasviel's `cldm_v15.yaml`.
SD15 = UNetFamily(
    "SD 1.5 ControlNet",
    head_dim=None,
    num_heads=8,
    linear_projection=False,
    addition_time_embed_dim=None,
    sample_size=64,
)
_UNET_FIELDS_DROPPED = ("out_channels", "up_block_types", "sample_size", "time_embedding_dim", "_class_name")


def hint_channels(s: ShapeReader) -> tuple[int, list[int]]:
    """(condition channels, the encoder's step channels): conv 0, then a strided conv every fourth index."""
    convs = _even_convs(s)
    if convs < 3 or convs % 2:
        raise s.fail(f"{HINT_BLOCK}.0.weight", f"{convs} convolutions: not a condition encoder")
    steps = [s(f"{HINT_BLOCK}.0.weight")[0]] + [
        s(f"{HINT_BLOCK}.{4 * j}.weight")[0] for j in range(1, convs // 2)
    ]
    return s(f"{HINT_BLOCK}.0.weight")[1], steps


def _even_convs(s: ShapeReader) -> int:
    indices = sorted(
        {
            int(m[1])
            for key in s.shapes
            if (m := re.match(rf"{re.escape(s.prefix)}{HINT_BLOCK}\.(\d+)\.weight", key))
        }
    )
    if indices != list(range(0, 2 * len(indices), 2)):
        raise s.fail(f"{HINT_BLOCK}", f"convolutions at indices {indices}, expected 0, 2, 4, ...")
    return len(indices)


def controlnet_config(shapes: Mapping[str, Shape]) -> dict[str, Any]:
    """The diffusers `ControlNetModel` config of an original SD 1.5 ControlNet, from its shapes."""
    s = ShapeReader(shapes, PREFIX, "SD 1.5 ControlNet")
    as_unet = {UNET_PREFIX + key.removeprefix(PREFIX): shape for key, shape in shapes.items()}
    first = s("input_blocks.0.0.weight")
    # The UNet reader wants the output convolution, which a ControlNet lacks: it names no weight here.
    as_unet[UNET_PREFIX + "out.2.weight"] = (first[1], first[0], 3, 3)
    unet = unet_config(as_unet, SD15)
    channels, steps = hint_channels(s)
    kept = {key: value for key, value in unet.items() if key not in _UNET_FIELDS_DROPPED}
    return kept | {"conditioning_channels": channels, "conditioning_embedding_out_channels": steps}


def _to_upstream(tensors: Mapping[str, Any], configs: UpstreamConfigs) -> Mapping[str, Any]:
    from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint

    return convert_controlnet_checkpoint(dict(tensors), dict(configs[SUBFOLDER]))


LAYOUT = SingleFileLayout(
    prefixes=(PREFIX,),
    to_upstream=_to_upstream,
    upstream_configs=lambda shapes: {SUBFOLDER: controlnet_config(shapes)},
)

# -- writing one: diffusers ControlNetModel -> `control_model.*` --------------------------------------

_OWN = re.compile(
    r"controlnet_(cond_embedding\.(conv_in|blocks\.(\d+)|conv_out)|down_blocks\.(\d+)|mid_block)\.(\w+)"
)


def _own_key(match: re.Match[str], blocks: int) -> str:
    parameter = match[5]
    if match[2] == "conv_in":
        return f"{HINT_BLOCK}.0.{parameter}"
    if match[3] is not None:
        return f"{HINT_BLOCK}.{2 * int(match[3]) + 2}.{parameter}"
    if match[2] == "conv_out":
        return f"{HINT_BLOCK}.{2 * blocks + 2}.{parameter}"
    if match[4] is not None:
        return f"zero_convs.{match[4]}.0.{parameter}"
    return f"middle_block_out.0.{parameter}"


def controlnet_tensors(sub: str, header: Header) -> dict[str, OriginalTensor]:
    """Every tensor of a `ControlNetModel` under its original name (without the prefix)."""
    blocks = len(
        {m[1] for key in header if (m := re.match(r"controlnet_cond_embedding\.blocks\.(\d+)\.", key))}
    )
    own = {key: match for key in header if (match := _OWN.fullmatch(key))}
    unet = unet_tensors(sub, {key: value for key, value in header.items() if key not in own})
    for key, match in own.items():
        shape, dtype = header[key]
        unet[_own_key(match, blocks)] = OriginalTensor(tuple(shape), dtype, ((sub, key),), lambda t: t[0])
    return unet


def _no_extras(_headers: Mapping[str, Header]) -> dict[str, OriginalTensor]:
    return {}


ORIGINAL_FILE = OriginalFile(
    "SD 1.5 ControlNet (lllyasviel's layout)",
    parts={SUBFOLDER: (PREFIX, controlnet_tensors)},
    extras=_no_extras,
)


def write_synthetic(source_folder: Path, out_file: Path) -> Path:
    """An original ControlNet file from a folder holding a diffusers `controlnet/` folder."""
    folder = source_folder / SUBFOLDER
    if not (folder / "config.json").is_file():
        raise FormatError(f"no {SUBFOLDER}/config.json to write an original file from", file=source_folder)
    with open_checkpoint(_weights(folder)) as reader:
        header = {key: (reader.shape(key), reader.dtype(key)) for key in reader.keys()}
        plans = [
            TensorPlan(name, tensor.shape, tensor.dtype, _producer(reader, tensor))
            for name, tensor in original_tensors(ORIGINAL_FILE, {SUBFOLDER: header}).items()
        ]
        write_safetensors(out_file, plans, {"zoo.synthetic": f"{ORIGINAL_FILE.description}, from {folder}"})
    return out_file


def _weights(folder: Path) -> Path:
    found = sorted(folder.glob("*.safetensors"))
    if len(found) != 1:
        raise FormatError("expected one safetensors file", file=folder)
    return found[0]


def _producer(reader: CheckpointReader, tensor: OriginalTensor) -> Callable[[], torch.Tensor]:
    return lambda: tensor.make([reader.get(key) for _, key in tensor.inputs])


SINGLE_FILE = SingleFileFormat(
    Recognizer(
        "an original SD 1.5 ControlNet (lllyasviel's layout, control_model.*)",
        has_prefix(PREFIX + HINT_BLOCK),
    ),
    write_synthetic=write_synthetic,
    per_conversion=True,
)


__all__ = [
    "LAYOUT",
    "ORIGINAL_FILE",
    "PREFIX",
    "SINGLE_FILE",
    "controlnet_config",
    "controlnet_tensors",
    "hint_channels",
]

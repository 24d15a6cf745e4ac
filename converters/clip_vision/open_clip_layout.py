"""CLIP image encoders in OpenCLIP's layout (`open_clip_pytorch_model.bin` / `.safetensors`, `visual.*`).

OpenCLIP names the image tower `visual.*`: `conv1`, `class_embedding`, `positional_embedding`, `ln_pre`,
`transformer.resblocks.<i>` (`ln_1`, `attn.in_proj_weight` holding q, k and v stacked, `attn.out_proj`,
`ln_2`, `mlp.c_fc`, `mlp.c_proj`), `ln_post` and `proj`, a (width, embedding) matrix used as `x @ proj`.
`to_transformers` maps them onto transformers' names (splitting the stacked projection, transposing
`proj`); it runs once on recorded meta tensors and is replayed per tensor (`converters._single_file`).
Keys outside `visual.` (the text tower, `logit_scale`) belong to other components and are not read.

`write_open_clip_file` writes such a file from a transformers `image_encoder` folder, for offline
tests; the tests check the mapping against open-clip-torch's own model as well.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from converters._checkpoints import CheckpointReader, TensorPlan, open_checkpoint, write_safetensors
from converters._convert.sources import find_weights, read_config
from converters._single_file.shapes import ShapeReader
from converters.clip_vision.kinds import EncoderKind
from converters.clip_vision.transformers_layout import (
    PROJECTION_KEY,
    SUBFOLDER,
    image_encoder_part,
    upstream_image_encoder_config,
)
from converters.declaration import Shape, SingleFileLayout, UpstreamConfigs
from zoo.foundationals.clip.image_encoder import CLIPImageEncoderConfig

PREFIX = "visual."
STACKED_PROJECTIONS = ("q_proj", "k_proj", "v_proj")  # OpenCLIP's in_proj stacks them in this order
LOGIT_SCALE = math.log(1 / 0.07)  # CLIP's initial temperature, which whole-model files hold

_TOWER = {
    "class_embedding": "vision_model.embeddings.class_embedding",
    "conv1.weight": "vision_model.embeddings.patch_embedding.weight",
    "positional_embedding": "vision_model.embeddings.position_embedding.weight",
    "ln_pre.weight": "vision_model.pre_layrnorm.weight",
    "ln_pre.bias": "vision_model.pre_layrnorm.bias",
    "ln_post.weight": "vision_model.post_layernorm.weight",
    "ln_post.bias": "vision_model.post_layernorm.bias",
}
_LAYER = {
    "ln_1": "layer_norm1",
    "attn.out_proj": "self_attn.out_proj",
    "ln_2": "layer_norm2",
    "mlp.c_fc": "mlp.fc1",
    "mlp.c_proj": "mlp.fc2",
}
_PARAMS = ("weight", "bias")


def _layer_names(index: int) -> tuple[str, str]:
    return f"{PREFIX}transformer.resblocks.{index}.", f"vision_model.encoder.layers.{index}."


# -- OpenCLIP -> transformers -----------------------------------------------------------------------


def to_transformers(tensors: Mapping[str, Any], configs: UpstreamConfigs) -> dict[str, Any]:
    """OpenCLIP's `visual.*` tensors under transformers' names (recorded on meta, replayed per tensor)."""
    mapped = {upstream: tensors[PREFIX + name] for name, upstream in _TOWER.items()}
    mapped[PROJECTION_KEY] = tensors[f"{PREFIX}proj"].t().contiguous()
    for index in range(configs[SUBFOLDER]["num_hidden_layers"]):
        mapped.update(_layer(tensors, index))
    return mapped


def _layer(tensors: Mapping[str, Any], index: int) -> dict[str, Any]:
    source, target = _layer_names(index)
    mapped = {
        f"{target}{upstream}.{param}": tensors[f"{source}{name}.{param}"]
        for name, upstream in _LAYER.items()
        for param in _PARAMS
    }
    for param in _PARAMS:
        stacked = tensors[f"{source}attn.in_proj_{param}"].chunk(len(STACKED_PROJECTIONS), dim=0)
        for projection, tensor in zip(STACKED_PROJECTIONS, stacked, strict=True):
            mapped[f"{target}self_attn.{projection}.{param}"] = tensor
    return mapped


def configs_from_shapes(kind: EncoderKind) -> Callable[[Mapping[str, Shape]], dict[str, dict[str, Any]]]:
    """The transformers config of an OpenCLIP file's image tower: sizes from shapes, heads from `kind`."""

    def configs(shapes: Mapping[str, Shape]) -> dict[str, dict[str, Any]]:
        read = ShapeReader(shapes, PREFIX, f"OpenCLIP {kind.name} image tower")
        hidden, channels, patch, _ = read("conv1.weight")
        side = _grid_side(read)
        if hidden % kind.head_dim:
            raise read.fail(
                "conv1.weight", f"width {hidden} is not a multiple of {kind.head_dim}-channel heads"
            )
        config = CLIPImageEncoderConfig(
            image_size=side * patch,
            patch_size=patch,
            num_channels=channels,
            hidden_size=hidden,
            num_layers=read.count(r"transformer\.resblocks\.(\d+)\."),
            num_heads=hidden // kind.head_dim,
            intermediate_size=read("transformer.resblocks.0.mlp.c_fc.weight")[0],
            activation=kind.activation,
            projection_dim=read("proj")[1],
        )
        return {SUBFOLDER: upstream_image_encoder_config(config)}

    return configs


def _grid_side(read: ShapeReader) -> int:
    """Patches per side, from the positions (a class token, then a square grid of patches)."""
    patches = read("positional_embedding")[0] - 1
    side = math.isqrt(patches)
    if side * side != patches:
        raise read.fail("positional_embedding", f"{patches} patch positions do not make a square grid")
    return side


def open_clip_layout(kind: EncoderKind) -> SingleFileLayout:
    """Where an encoder of `kind` sits in an OpenCLIP checkpoint."""
    return SingleFileLayout(
        prefixes=(PREFIX,), to_upstream=to_transformers, upstream_configs=configs_from_shapes(kind)
    )


# -- transformers -> OpenCLIP (synthetic files) ------------------------------------------------------


def write_open_clip_file(pipeline_folder: Path, out_file: Path) -> Path:
    """An OpenCLIP checkpoint holding the image tower of `pipeline_folder/image_encoder` (streamed)."""
    folder = pipeline_folder / SUBFOLDER
    layers = int(read_config(folder / "config.json")["num_hidden_layers"])
    with open_checkpoint(find_weights(folder, image_encoder_part())) as reader:
        plans = list(_open_clip_plans(reader, layers))
        write_safetensors(out_file, plans, {"format": "pt"})
    return out_file


def _open_clip_plans(reader: CheckpointReader, layers: int) -> Iterator[TensorPlan]:
    dtype = reader.dtype(PROJECTION_KEY)
    for name, upstream in _TOWER.items():
        yield _plan(PREFIX + name, reader, [upstream], lambda t: t[0])
    yield _plan(f"{PREFIX}proj", reader, [PROJECTION_KEY], lambda t: t[0].t().contiguous())
    for index in range(layers):
        yield from _layer_plans(reader, index)
    yield TensorPlan("logit_scale", (), dtype, lambda: torch.tensor(LOGIT_SCALE))


def _layer_plans(reader: CheckpointReader, index: int) -> Iterator[TensorPlan]:
    source, target = _layer_names(index)
    for name, upstream in _LAYER.items():
        for param in _PARAMS:
            yield _plan(f"{source}{name}.{param}", reader, [f"{target}{upstream}.{param}"], lambda t: t[0])
    for param in _PARAMS:
        inputs = [f"{target}self_attn.{projection}.{param}" for projection in STACKED_PROJECTIONS]
        yield _plan(f"{source}attn.in_proj_{param}", reader, inputs, lambda t: torch.cat(t))


def _plan(
    name: str, reader: CheckpointReader, inputs: list[str], make: Callable[[list[torch.Tensor]], torch.Tensor]
) -> TensorPlan:
    shapes = [reader.shape(key) for key in inputs]
    shape = tuple(make([torch.empty(s, device="meta") for s in shapes]).shape)
    return TensorPlan(name, shape, reader.dtype(inputs[0]), lambda: make([reader.get(key) for key in inputs]))


__all__ = ["PREFIX", "configs_from_shapes", "open_clip_layout", "to_transformers", "write_open_clip_file"]

"""Writes the original checkpoint of a transformers `SamModel` folder, for offline tests and
`zoo convert sam --synthetic tiny --layout single-file`.

The names go the other way from `original.py`'s and are written independently of them, so a test
converting the written file checks one mapping against the other (and the family's tests load the
original file into the `segment_anything` package itself).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch

from converters._checkpoints import open_checkpoint
from converters._convert.sources import find_weights, read_config
from converters.declaration import UpstreamPart
from converters.sam.original import SUBFOLDER, depths_of
from zoo.errors import FormatError

_LAYER_PARTS = {"layer_norm1": "norm1", "layer_norm2": "norm2", "attn": "attn", "mlp": "mlp"}
_NECK = {"conv1": "0", "layer_norm1": "1", "conv2": "2", "layer_norm2": "3"}
_MASK_EMBED = {"conv1": "0", "layer_norm1": "1", "conv2": "3", "layer_norm2": "4", "conv3": "6"}
_UPSCALE = {"upscale_conv1": "0", "upscale_layer_norm": "1", "upscale_conv2": "3"}


def _layer_index(name: str, depth: int) -> int:
    """transformers' `SamFeedForward` layer name → its index in the original MLP's `layers`."""
    if name == "proj_in":
        return 0
    if name == "proj_out":
        return depth - 1
    return int(name.removeprefix("layers.")) + 1


def original_name(key: str, depths: Mapping[str, int]) -> str:
    """A transformers `SamModel` key → the original checkpoint's key."""
    if match := re.fullmatch(r"vision_encoder\.layers\.(\d+)\.(layer_norm1|layer_norm2|attn|mlp)\.(.+)", key):
        return f"image_encoder.blocks.{match[1]}.{_LAYER_PARTS[match[2]]}.{match[3]}"
    if match := re.fullmatch(r"vision_encoder\.neck\.(\w+)\.(\w+)", key):
        return f"image_encoder.neck.{_NECK[match[1]]}.{match[2]}"
    if match := re.fullmatch(r"prompt_encoder\.mask_embed\.(\w+)\.(\w+)", key):
        return f"prompt_encoder.mask_downscaling.{_MASK_EMBED[match[1]]}.{match[2]}"
    if match := re.fullmatch(r"mask_decoder\.(upscale_\w+)\.(\w+)", key):
        return f"mask_decoder.output_upscaling.{_UPSCALE[match[1]]}.{match[2]}"
    if match := re.fullmatch(
        r"mask_decoder\.(output_hypernetworks_mlps\.\d+|iou_prediction_head)\.(.+)\.(\w+)", key
    ):
        depth = depths["iou_head" if match[1] == "iou_prediction_head" else "hypernetwork"]
        return f"mask_decoder.{match[1]}.layers.{_layer_index(match[2], depth)}.{match[3]}"
    return _simple(key)


def _simple(key: str) -> str:
    replacements = (
        ("vision_encoder.pos_embed", "image_encoder.pos_embed"),
        ("vision_encoder.patch_embed.projection.", "image_encoder.patch_embed.proj."),
        (
            "shared_image_embedding.positional_embedding",
            "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix",
        ),
        ("prompt_encoder.point_embed.", "prompt_encoder.point_embeddings."),
        ("mask_decoder.transformer.layer_norm_final_attn.", "mask_decoder.transformer.norm_final_attn."),
    )
    for old, new in replacements:
        if key.startswith(old):
            return new + key[len(old) :]
    if match := re.fullmatch(r"(mask_decoder\.transformer\.layers\.\d+)\.layer_norm([1-4])\.(\w+)", key):
        return f"{match[1]}.norm{match[2]}.{match[3]}"
    return key  # the names both layouts share (attention projections, tokens, embeddings)


def write_original(folder: Path, file: Path, part: UpstreamPart) -> Path:
    """The original checkpoint (a `torch.save`d state dict) holding a synthetic source's `sam` weights.

    Written next to `file`, with the `.pth` suffix the releases have.
    """
    source = folder / SUBFOLDER
    depths = depths_of({SUBFOLDER: read_config(source / "config.json")})
    with open_checkpoint(find_weights(source, part)) as reader:
        keys = reader.keys()
        state = {original_name(key, depths): reader.get(key).clone() for key in keys}
    if len(state) != len(keys):
        raise FormatError("two tensors of the folder have the same original name", file=source)
    path = file.with_suffix(".pth")
    torch.save(dict(sorted(state.items())), path)
    return path


__all__ = ["original_name", "write_original"]

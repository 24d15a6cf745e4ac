"""Swin's original release files (`swin_tiny_patch4_window7_224.pth`, …) and timm's, as a single-file layout.

microsoft/Swin-Transformer saves `{"model": state_dict}` with its own names: `patch_embed.proj`,
`layers.N.blocks.M.attn.qkv` (query, key and value rows stacked), `attn.proj`, `norm1`/`norm2`,
`mlp.fc1`/`fc2`, the patch merging at the end of a stage (`layers.N.downsample`), the final `norm` and
the ImageNet `head`. Each block also saves its `relative_position_index` and, when shifted, its
`attn_mask` for the training resolution: both are derived, not weights. timm (≥ 0.9) keeps the names
but moves the merging to the start of the next stage (`layers.N+1.downsample`, stage 0 has none) and
names its head `head.fc`; a file is timm's when it has merging weights but none in stage 0.

`to_upstream` maps either layout onto transformers' `SwinModel` names, cutting `qkv` in three; it is
recorded on the header and replayed per tensor (`converters._single_file`). The configuration comes
from the shapes (`converters.swin.shapes`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from converters.declaration import Shape, SingleFileLayout
from converters.family import Recognizer
from converters.swin.shapes import swin_upstream_config
from converters.swin.upstream import SUBFOLDER
from zoo.errors import ConfigError, FormatError

IGNORED = {
    "*.attn.relative_position_index": "the relative position index: derived from the window size, not a weight",
    "*.attn_mask": "the shifted-window mask for the training resolution: derived, not a weight",
    "head.*": "the ImageNet classification head: zoo's Swin is a backbone",
}
ABSOLUTE_POSITIONS = "absolute_pos_embed"
FIRST_TABLE = "layers.0.blocks.0.attn.relative_position_bias_table"
QKV = ("q_proj", "k_proj", "v_proj")

_RENAMES: tuple[tuple[str, str], ...] = (
    (r"patch_embed\.proj\.(weight|bias)", r"embeddings.patch_embeddings.projection.\1"),
    (r"patch_embed\.norm\.(weight|bias)", r"embeddings.norm.\1"),
    (
        r"layers\.(\d+)\.blocks\.(\d+)\.norm1\.(weight|bias)",
        r"encoder.layers.\1.blocks.\2.layernorm_before.\3",
    ),
    (
        r"layers\.(\d+)\.blocks\.(\d+)\.norm2\.(weight|bias)",
        r"encoder.layers.\1.blocks.\2.layernorm_after.\3",
    ),
    (
        r"layers\.(\d+)\.blocks\.(\d+)\.attn\.proj\.(weight|bias)",
        r"encoder.layers.\1.blocks.\2.attention.o_proj.\3",
    ),
    (
        r"layers\.(\d+)\.blocks\.(\d+)\.attn\.relative_position_bias_table",
        r"encoder.layers.\1.blocks.\2.attention.relative_position_bias.relative_position_bias_table",
    ),
    (
        r"layers\.(\d+)\.blocks\.(\d+)\.mlp\.(fc1|fc2)\.(weight|bias)",
        r"encoder.layers.\1.blocks.\2.mlp.\3.\4",
    ),
    (r"norm\.(weight|bias)", r"layernorm.\1"),
)
_QKV = re.compile(r"layers\.(\d+)\.blocks\.(\d+)\.attn\.qkv\.(weight|bias)")
_MERGING = re.compile(r"layers\.(\d+)\.downsample\.(norm\.weight|norm\.bias|reduction\.weight)")


def is_timm_layout(keys: Mapping[str, Any]) -> bool:
    """timm puts the merging at the start of stages 1…, the original at the end of stages 0…."""
    merging = [found for key in keys if (found := _MERGING.fullmatch(key))]
    return bool(merging) and all(found.group(1) != "0" for found in merging)


def model_keys(file_key: str, timm: bool) -> tuple[str, ...]:
    """`SwinModel`'s names for a file key (three for `qkv`), or () for a key of no known layout."""
    qkv = _QKV.fullmatch(file_key)
    if qkv:
        stage, block, kind = qkv.groups()
        return tuple(f"encoder.layers.{stage}.blocks.{block}.attention.{part}.{kind}" for part in QKV)
    merging = _MERGING.fullmatch(file_key)
    if merging:
        stage = int(merging.group(1)) - (1 if timm else 0)
        return (f"encoder.layers.{stage}.downsample.{merging.group(2)}",)
    for pattern, replacement in _RENAMES:
        if re.fullmatch(pattern, file_key):
            return (re.sub(pattern, replacement, file_key),)
    return ()


def _check_keys(shapes: Mapping[str, Shape]) -> bool:
    """The layout (True: timm's), after checking every key is one of a Swin V1 backbone."""
    if ABSOLUTE_POSITIONS in shapes:
        raise ConfigError(
            "absolute position embeddings (the original code's ape=True) are not supported",
            tensor=ABSOLUTE_POSITIONS,
        )
    timm = is_timm_layout(shapes)
    unknown = [key for key in shapes if not model_keys(key, timm)]
    if unknown:
        raise FormatError(f"not a tensor of a Swin backbone ({len(unknown)} such)", tensor=unknown[0])
    return timm


def model_shapes(shapes: Mapping[str, Shape]) -> dict[str, Shape]:
    """The file's shapes under `SwinModel`'s names (`qkv` cut in three along its rows)."""
    timm = _check_keys(shapes)
    renamed: dict[str, Shape] = {}
    for key, shape in shapes.items():
        names = model_keys(key, timm)
        part = (shape[0] // len(names), *shape[1:])
        renamed.update({name: part if len(names) > 1 else tuple(shape) for name in names})
    return renamed


def upstream_configs(shapes: Mapping[str, Shape]) -> dict[str, dict[str, Any]]:
    """The transformers config of the file's backbone, from its shapes."""
    return {SUBFOLDER: swin_upstream_config(model_shapes(shapes))}


def to_upstream(tensors: Mapping[str, Any], _configs: Mapping[str, Any]) -> dict[str, Any]:
    """The file's (recorded) tensors under `SwinModel`'s names; `qkv` rows cut into query, key, value."""
    timm = _check_keys({key: tuple(tensor.shape) for key, tensor in tensors.items()})
    upstream: dict[str, Any] = {}
    for key, tensor in tensors.items():
        names = model_keys(key, timm)
        parts = tensor.chunk(len(names), dim=0) if len(names) > 1 else (tensor,)
        upstream.update(zip(names, parts, strict=True))
    return upstream


def _is_original(shapes: Mapping[str, Shape]) -> bool:
    return FIRST_TABLE in shapes and any(key.startswith("patch_embed.") for key in shapes)


LAYOUT = SingleFileLayout(
    prefixes=("",),  # the whole file is the backbone: any key it does not know is an error
    to_upstream=to_upstream,
    upstream_configs=upstream_configs,
    ignored=IGNORED,
)
RECOGNIZER = Recognizer(
    "a Swin Transformer checkpoint in the original layout (microsoft/Swin-Transformer or timm)",
    _is_original,
    "swin.backbone",
)

__all__ = [
    "IGNORED",
    "LAYOUT",
    "RECOGNIZER",
    "is_timm_layout",
    "model_keys",
    "model_shapes",
    "to_upstream",
    "upstream_configs",
]

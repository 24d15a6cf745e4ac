"""The original release files (`dinov2_vits14_pretrain.pth`, `dinov2_vits14_reg4_pretrain.pth`, ...).

Each holds one backbone's state dict as the original code (facebookresearch/dinov2) names it:
`cls_token`, `pos_embed` (class position first), `register_tokens`, `mask_token`, `patch_embed.proj`,
`blocks.N.{norm1, attn.qkv, attn.proj, ls1.gamma, norm2, mlp.fc1, mlp.fc2, ls2.gamma}` (ViT-g: a
fused `mlp.w12`, gate rows first, and `mlp.w3`) and `norm`. The config comes from the shapes: depth
from the block count, width from the class token, heads from the 64-wide heads every release uses,
the trained grid from `pos_embed`. The code these files were made for resizes position embeddings as
`DINOv2Config.with_original_interpolation` says, so configs derived here record it.

`to_upstream` renames onto transformers' model and splits the fused projections (q|k|v, gate|up)
along their rows; it runs on recorded tensors (`converters._single_file`), so only names and shapes
are read to learn it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from converters._single_file.shapes import ShapeReader
from converters.declaration import SingleFileLayout, UpstreamConfigs
from converters.dinov2.releases import Release
from converters.dinov2.transformers_config import upstream_config
from converters.family import Recognizer, Shapes
from zoo.errors import FormatError
from zoo.foundationals.dinov2 import DINOv2Config
from zoo.foundationals.dinov2.vision_transformer import RELEASE_HEAD_SIZE

ALL_KEYS = ("",)  # the file holds one backbone: every key is the conversion's
LAYER_NORM_EPS = 1e-6  # the original code's `partial(nn.LayerNorm, eps=1e-6)`
WHAT = "DINOv2 original checkpoint"

_EMBEDDINGS = {
    "cls_token": "embeddings.cls_token",
    "mask_token": "embeddings.mask_token",
    "pos_embed": "embeddings.position_embeddings",
    "register_tokens": "embeddings.register_tokens",
    "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
    "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
    "norm.weight": "layernorm.weight",
    "norm.bias": "layernorm.bias",
}
# name inside `blocks.N.` -> name inside transformers' `encoder.layer.N.`
_BLOCK_RENAMES = {
    "norm1": "norm1",
    "attn.proj": "attention.o_proj",
    "norm2": "norm2",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
    "mlp.w3": "mlp.down_proj",
}
# fused projection inside `blocks.N.` -> its row blocks, in order
_BLOCK_SPLITS = {
    "attn.qkv": ("attention.q_proj", "attention.k_proj", "attention.v_proj"),
    "mlp.w12": ("mlp.gate_proj", "mlp.up_proj"),
}
_LAYER_SCALES = {"ls1.gamma": "layer_scale1.lambda1", "ls2.gamma": "layer_scale2.lambda1"}
_BLOCK_KEY = re.compile(r"blocks\.(\d+)\.(.+)")
_MODULE_PARAMETER = re.compile(r"(.+)\.(weight|bias)")


def _known(key: str) -> bool:
    if key in _EMBEDDINGS:
        return True
    block = _BLOCK_KEY.fullmatch(key)
    if block is None:
        return False
    inner = block[2]
    module = _MODULE_PARAMETER.fullmatch(inner)
    return inner in _LAYER_SCALES or (module is not None and module[1] in {*_BLOCK_RENAMES, *_BLOCK_SPLITS})


def _check_names(shapes: Shapes) -> None:
    unknown = sorted(key for key in shapes if not _known(key))
    if unknown:
        raise FormatError(
            f"{len(unknown)} tensor(s) that no {WHAT} holds, e.g. {', '.join(unknown[:5])}",
            tensor=unknown[0],
            hint="a checkpoint of another model, or saved by other code (timm's, transformers')",
        )


def original_config(shapes: Shapes) -> DINOv2Config:
    """Our config from an original file's names and shapes.

    Raises:
        FormatError: A name no original file holds.
        ConfigError: A shape the original architecture cannot have (named).
    """
    _check_names(shapes)
    read = ShapeReader(shapes, "", WHAT)
    hidden = read("cls_token")[-1]
    _, channels, patch, _ = read("patch_embed.proj.weight")
    side = _grid_side(read)
    if hidden % RELEASE_HEAD_SIZE:
        raise read.fail(
            "cls_token", f"width {hidden} is not a multiple of the {RELEASE_HEAD_SIZE}-wide heads"
        )
    swiglu = read.has("blocks.0.mlp.w12.weight")
    return DINOv2Config(
        image_size=side * patch,
        patch_size=patch,
        in_channels=channels,
        hidden_size=hidden,
        num_layers=read.count(r"blocks\.(\d+)\."),
        num_heads=hidden // RELEASE_HEAD_SIZE,
        feedforward="swiglu" if swiglu else "mlp",
        feedforward_size=read("blocks.0.mlp.w3.weight")[1] if swiglu else read("blocks.0.mlp.fc1.weight")[0],
        num_registers=read("register_tokens")[1] if read.has("register_tokens") else 0,
        layer_norm_eps=LAYER_NORM_EPS,
    ).with_original_interpolation()


def _grid_side(read: ShapeReader) -> int:
    positions = read("pos_embed")[1] - 1  # the first is the class token's
    side = math.isqrt(positions)
    if side * side != positions:
        raise read.fail("pos_embed", f"{positions} patch positions do not form a square grid")
    return side


def _upstream_key(key: str) -> str | tuple[str, ...]:
    """The transformers name(s) of an original tensor; a tuple for a fused one (split along rows)."""
    if key in _EMBEDDINGS:
        return _EMBEDDINGS[key]
    block = _BLOCK_KEY.fullmatch(key)
    assert block is not None, key  # the names were checked when the config was derived
    prefix, inner = f"encoder.layer.{block[1]}.", block[2]
    if inner in _LAYER_SCALES:
        return prefix + _LAYER_SCALES[inner]
    module = _MODULE_PARAMETER.fullmatch(inner)
    assert module is not None, key
    if module[1] in _BLOCK_SPLITS:
        return tuple(f"{prefix}{part}.{module[2]}" for part in _BLOCK_SPLITS[module[1]])
    return f"{prefix}{_BLOCK_RENAMES[module[1]]}.{module[2]}"


def to_upstream(tensors: Mapping[str, Any], _configs: UpstreamConfigs) -> dict[str, Any]:
    """The original file's tensors under transformers' names (recorded: nothing is computed)."""
    upstream: dict[str, Any] = {}
    for key, tensor in tensors.items():
        names = _upstream_key(key)
        if isinstance(names, str):
            upstream[names] = tensor
        else:
            upstream.update(zip(names, tensor.chunk(len(names), dim=0), strict=True))
    return upstream


def original_layout(release: Release) -> SingleFileLayout:
    """How a release's original file becomes transformers' model, under its part's subfolder."""
    return SingleFileLayout(
        prefixes=ALL_KEYS,
        to_upstream=to_upstream,
        upstream_configs=lambda shapes: {release.component: upstream_config(original_config(shapes))},
    )


def looks_original(shapes: Shapes) -> bool:
    """An original DINOv2 file: the mask token and layer scales set it apart from other ViTs (timm's
    DINOv2 checkpoints drop the mask token)."""
    return all(key in shapes for key in ("cls_token", "mask_token", "pos_embed", "blocks.0.ls1.gamma"))


def original_recognizer(conversion: str) -> Recognizer:
    """Recognises original files; `conversion` converts them (the family, which picks the size)."""
    return Recognizer("a DINOv2 backbone (original release layout)", looks_original, conversion)


__all__ = ["looks_original", "original_config", "original_layout", "original_recognizer", "to_upstream"]

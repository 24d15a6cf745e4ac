"""Tensor names of transformers DINOv2 files, saved by transformers 4.x or 5.x, as the installed
transformers' model names them.

transformers 5 renamed the attention projections (`attention.attention.query` -> `attention.q_proj`,
`attention.output.dense` -> `attention.o_proj`) and split ViT-g's fused SwiGLU input projection
(`mlp.weights_in`, gate rows first) into `mlp.gate_proj` and `mlp.up_proj` (`mlp.weights_out` ->
`mlp.down_proj`); it renames 4.x files when loading them, and its `save_pretrained` writes the 4.x
names by default, as the Hub's `facebook/dinov2-*` files have them. Files written from a 5.x model's
own state dict have the new names. Both layouts map onto the model's names here; any other name is
left for the conversion to reject as a tensor the model does not have.
"""

from __future__ import annotations

from collections.abc import Mapping

from converters.declaration import KeyNormalization, Shape

# 4.x name part -> 5.x name part
LEGACY_RENAMES = (
    (".attention.attention.query.", ".attention.q_proj."),
    (".attention.attention.key.", ".attention.k_proj."),
    (".attention.attention.value.", ".attention.v_proj."),
    (".attention.output.dense.", ".attention.o_proj."),
    (".mlp.weights_out.", ".mlp.down_proj."),
)
FUSED_SWIGLU = ".mlp.weights_in."
SPLIT_SWIGLU = (".mlp.gate_proj.", ".mlp.up_proj.")  # the order of the fused rows


def model_key(file_key: str) -> str:
    """The installed transformers' name of a file's tensor (a 5.x name is its own)."""
    for old, new in LEGACY_RENAMES:
        if old in file_key:
            return file_key.replace(old, new)
    return file_key


def normalize_keys(shapes: Mapping[str, Shape]) -> KeyNormalization:
    """4.x and 5.x names onto the model's; a fused 4.x SwiGLU projection is split in two."""
    renames = {key: model_key(key) for key in shapes if FUSED_SWIGLU not in key}
    splits = {
        key: tuple(key.replace(FUSED_SWIGLU, part) for part in SPLIT_SWIGLU)
        for key in shapes
        if FUSED_SWIGLU in key
    }
    return KeyNormalization(renames=renames, splits=splits)


__all__ = ["normalize_keys"]

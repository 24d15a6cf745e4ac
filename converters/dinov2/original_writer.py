"""Writes an original release file (`dinov2_*_pretrain.pth`) from a transformers DINOv2 folder.

For offline tests and `zoo convert dinov2.<size> --synthetic tiny --layout single-file`: the folder
is loaded by transformers itself, and its model's tensors are renamed (and the q|k|v and gate|up
projections fused along their rows) into the original code's names by a table of its own, written
independently of the converter's (`original.py`), so that converting the file back checks both.
"""

from __future__ import annotations

from pathlib import Path

import torch

from zoo.errors import ConfigError

ORIGINAL_SUFFIX = ".pth"
_TOP = {
    "embeddings.cls_token": "cls_token",
    "embeddings.mask_token": "mask_token",
    "embeddings.position_embeddings": "pos_embed",
    "embeddings.register_tokens": "register_tokens",
    "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "layernorm.weight": "norm.weight",
    "layernorm.bias": "norm.bias",
}
# original name inside `blocks.N.` -> the transformers names inside `encoder.layer.N.` it is made of
_LAYER = {
    "norm1": ("norm1",),
    "attn.qkv": ("attention.q_proj", "attention.k_proj", "attention.v_proj"),
    "attn.proj": ("attention.o_proj",),
    "norm2": ("norm2",),
    "mlp.fc1": ("mlp.fc1",),
    "mlp.fc2": ("mlp.fc2",),
    "mlp.w12": ("mlp.gate_proj", "mlp.up_proj"),
    "mlp.w3": ("mlp.down_proj",),
}
_LAYER_SCALES = {"ls1.gamma": "layer_scale1.lambda1", "ls2.gamma": "layer_scale2.lambda1"}


def _sources(state: dict[str, torch.Tensor], num_layers: int) -> dict[str, list[str]]:
    """Original name -> the transformers names it is made of (several: fused along rows)."""
    sources = {name: [key] for key, name in _TOP.items() if key in state}
    for index in range(num_layers):
        layer = f"encoder.layer.{index}."
        sources |= {f"blocks.{index}.{name}": [layer + key] for name, key in _LAYER_SCALES.items()}
        for name, parts in _LAYER.items():
            for kind in ("weight", "bias"):
                if f"{layer}{parts[0]}.{kind}" in state:
                    sources[f"blocks.{index}.{name}.{kind}"] = [f"{layer}{part}.{kind}" for part in parts]
    return sources


def original_state_dict(state: dict[str, torch.Tensor], num_layers: int) -> dict[str, torch.Tensor]:
    """A transformers DINOv2 model's state dict under the original code's names."""
    sources = _sources(state, num_layers)
    left = set(state) - {key for keys in sources.values() for key in keys}
    if left:
        raise ConfigError(
            f"the transformers model holds tensors this writer does not know: {sorted(left)[:5]}"
        )
    return {name: torch.cat([state[key] for key in keys], dim=0) for name, keys in sources.items()}


def write_original_file(pipeline_folder: Path, out_file: Path) -> Path:
    """Write the original file of the one DINOv2 folder under `pipeline_folder`; returns its path."""
    import transformers

    folders = sorted(path.parent for path in pipeline_folder.glob("*/config.json"))
    if len(folders) != 1:
        raise ConfigError(
            f"{len(folders)} model folders here: an original DINOv2 file holds one model",
            file=pipeline_folder,
        )
    model = transformers.AutoModel.from_pretrained(folders[0])
    state = original_state_dict(model.state_dict(), model.config.num_hidden_layers)
    path = out_file.with_suffix(ORIGINAL_SUFFIX)
    torch.save(state, path)
    return path


__all__ = ["original_state_dict", "write_original_file"]

"""Writes a Swin backbone as an original release file (`{"model": state_dict}`, microsoft's names).

For offline tests and `zoo convert swin --synthetic tiny --layout single-file`: the weights of a
transformers folder, loaded by transformers itself, renamed by a table of our own written from
transformers' names toward the original ones (the converter reads the other way, `original.py`), with
what real files also hold: every block's relative position index, the shifted blocks' attention masks
for the training resolution and an ImageNet head.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from converters.swin.upstream import SUBFOLDER, derive_swin_config
from zoo.foundationals.swin.transformer import MERGE_STRIDE, SwinConfig
from zoo.foundationals.swin.windows import WindowPlan, relative_position_index

IMAGENET_CLASSES = 1000
SUFFIX = ".pth"

_BLOCK = r"encoder\.layers\.(\d+)\.blocks\.(\d+)\."
_TO_ORIGINAL: tuple[tuple[str, str], ...] = (
    (r"embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
    (r"embeddings\.norm\.", "patch_embed.norm."),
    (_BLOCK + r"layernorm_before\.", r"layers.\1.blocks.\2.norm1."),
    (_BLOCK + r"layernorm_after\.", r"layers.\1.blocks.\2.norm2."),
    (_BLOCK + r"attention\.o_proj\.", r"layers.\1.blocks.\2.attn.proj."),
    (
        _BLOCK + r"attention\.relative_position_bias\.relative_position_bias_table",
        r"layers.\1.blocks.\2.attn.relative_position_bias_table",
    ),
    (_BLOCK + r"mlp\.", r"layers.\1.blocks.\2.mlp."),
    (r"encoder\.layers\.(\d+)\.downsample\.", r"layers.\1.downsample."),
    (r"layernorm\.", "norm."),
)
_QUERY = re.compile(_BLOCK + r"attention\.q_proj\.(weight|bias)")


def _original_name(key: str) -> str | None:
    """The original name of a `SwinModel` tensor; None for key and value (stacked under the query's)."""
    query = _QUERY.fullmatch(key)
    if query:
        return "layers.{}.blocks.{}.attn.qkv.{}".format(*query.groups())
    if re.search(r"attention\.[kv]_proj\.", key):
        return None
    for pattern, replacement in _TO_ORIGINAL:
        if re.match(pattern, key):
            return re.sub(pattern, replacement, key, count=1)
    raise KeyError(f"no original name for {key!r}")


def _stacked_qkv(state: dict[str, torch.Tensor], query_key: str) -> torch.Tensor:
    """Query, key and value rows stacked, as the original `qkv` projection holds them."""
    return torch.cat([state[query_key.replace("q_proj", part)] for part in ("q_proj", "k_proj", "v_proj")])


def _buffers(config: SwinConfig) -> dict[str, torch.Tensor]:
    """Each block's position index, and the attention mask of the shifted blocks at the training size."""
    buffers: dict[str, torch.Tensor] = {}
    side = config.image_size // config.patch_size
    for stage, depth in enumerate(config.depths):
        for block in range(depth):
            prefix = f"layers.{stage}.blocks.{block}."
            buffers[prefix + "attn.relative_position_index"] = relative_position_index(
                config.window_size
            ).clone()
            shift = config.shift_size if block % 2 else 0
            plan = WindowPlan.for_feature_map(side, side, config.window_size, shift)
            mask = plan.shift_mask(torch.device("cpu"), torch.float32)
            if mask is not None:
                buffers[prefix + "attn_mask"] = mask
        side //= MERGE_STRIDE
    return buffers


def original_state_dict(state: dict[str, torch.Tensor], config: SwinConfig) -> dict[str, torch.Tensor]:
    """A `SwinModel` state dict (transformers 5 names) as an original release file holds it."""
    original: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        name = _original_name(key)
        if name is not None:
            original[name] = _stacked_qkv(state, key) if _QUERY.fullmatch(key) else tensor
    generator = torch.Generator().manual_seed(config.num_features)
    original["head.weight"] = torch.randn(IMAGENET_CLASSES, config.num_features, generator=generator)
    original["head.bias"] = torch.zeros(IMAGENET_CLASSES)
    return original | _buffers(config)


def write_original_file(pipeline_folder: Path, out_file: Path) -> Path:
    """Save the backbone of `pipeline_folder` as an original `.pth` release file; returns its path."""
    from transformers import SwinModel

    folder = pipeline_folder / SUBFOLDER
    model = SwinModel.from_pretrained(folder)
    config = derive_swin_config(model.config.to_dict())
    state = {key: tensor.detach().contiguous() for key, tensor in model.state_dict().items()}
    path = out_file.with_suffix(SUFFIX)
    torch.save({"model": original_state_dict(state, config)}, path)
    return path


__all__ = ["original_state_dict", "write_original_file"]

"""A Swin's architecture read from its tensors' shapes (names as transformers 5's `SwinModel` has them).

For files without a `config.json` (the original releases) and for `zoo inspect`: the width and patch
size come from the patch embedding, the stages and their depths from the block names, the heads and the
window from each stage's position table ((2·window - 1)² rows, one column per head), the feed-forward
ratio from `fc1`. What no shape shows, the training resolution, is taken as one window in the last
stage (224 pixels for the window-7 releases, 384 for the window-12 ones).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from converters.declaration import Shape
from converters.swin.upstream import ACTIVATION, ARCHITECTURE, MODEL_TYPE
from zoo.errors import ConfigError
from zoo.foundationals.swin.transformer import MERGE_STRIDE

PATCH_EMBEDDING = "embeddings.patch_embeddings.projection.weight"
FEED_FORWARD = "encoder.layers.0.blocks.0.mlp.fc1.weight"
QUERY_BIAS = "encoder.layers.0.blocks.0.attention.q_proj.bias"
_TABLE = re.compile(
    r"encoder\.layers\.(\d+)\.blocks\.(\d+)\.attention\.relative_position_bias\.relative_position_bias_table"
)


def _block_tables(shapes: Mapping[str, Shape]) -> dict[int, dict[int, Shape]]:
    """Stage -> block -> shape of its position table."""
    stages: dict[int, dict[int, Shape]] = {}
    for key, shape in shapes.items():
        found = _TABLE.fullmatch(key)
        if found:
            stages.setdefault(int(found.group(1)), {})[int(found.group(2))] = tuple(shape)
    return stages


def _window(rows: int) -> int:
    side = math.isqrt(rows)
    if side * side != rows or side % 2 == 0:
        raise ConfigError(f"a position table of {rows} rows is not (2·window - 1)² for any window")
    return (side + 1) // 2


def _stages(shapes: Mapping[str, Shape]) -> tuple[tuple[int, ...], tuple[int, ...], int]:
    """(depths, heads per stage, window) from the position tables; ConfigError on gaps or mixed windows."""
    tables = _block_tables(shapes)
    if not tables or sorted(tables) != list(range(len(tables))):
        raise ConfigError(f"Swin stages found: {sorted(tables)}; expected 0, 1, … with no gap")
    depths, heads, windows = [], [], set()
    for stage in sorted(tables):
        blocks = tables[stage]
        if sorted(blocks) != list(range(len(blocks))):
            raise ConfigError(f"stage {stage} has blocks {sorted(blocks)}; expected 0, 1, … with no gap")
        depths.append(len(blocks))
        heads.append(blocks[0][1])
        windows |= {_window(shape[0]) for shape in blocks.values()}
    if len(windows) != 1:
        raise ConfigError(f"the stages use different windows {sorted(windows)}: not supported")
    return tuple(depths), tuple(heads), windows.pop()


def swin_upstream_config(shapes: Mapping[str, Shape]) -> dict[str, Any]:
    """The transformers `config.json` content of the Swin these tensors make.

    Raises:
        ConfigError: Shapes that no Swin V1 has (no patch embedding, gaps in the blocks, a table of an
            impossible size, different windows per stage).
    """
    if PATCH_EMBEDDING not in shapes:
        raise ConfigError("no patch embedding: not a Swin checkpoint", tensor=PATCH_EMBEDDING)
    width, channels, patch, _ = shapes[PATCH_EMBEDDING]
    depths, heads, window = _stages(shapes)
    if FEED_FORWARD not in shapes:
        raise ConfigError(
            "no feed-forward layer in the first block: not a Swin checkpoint", tensor=FEED_FORWARD
        )
    hidden = shapes[FEED_FORWARD][0]
    return {
        "architectures": [ARCHITECTURE],
        "model_type": MODEL_TYPE,
        "image_size": patch * MERGE_STRIDE ** (len(depths) - 1) * window,
        "patch_size": patch,
        "num_channels": channels,
        "embed_dim": width,
        "depths": list(depths),
        "num_heads": list(heads),
        "window_size": window,
        "mlp_ratio": hidden / width,
        "qkv_bias": QUERY_BIAS in shapes,
        "hidden_act": ACTIVATION,
        "use_absolute_embeddings": False,
    }


__all__ = ["FEED_FORWARD", "PATCH_EMBEDDING", "QUERY_BIAS", "swin_upstream_config"]

"""The tensor names of transformers Swin files, mapped onto `SwinModel`'s own (transformers 5) names.

Files name the same tensors in several ways:
- transformers 4.x names (`attention.self.query`, `attention.output.dense`, `intermediate.dense`, ...),
  which transformers 5's `save_pretrained` still writes (it maps its names back when saving);
- transformers 5 names (`attention.q_proj`, `attention.o_proj`, `mlp.fc1`, ...), a model's state dict;
- either under `swin.` with a `classifier.` head: `SwinForImageClassification`, every Hub release;
- files saved by transformers 4.x also hold each block's `relative_position_index` buffer.
`normalize_swin_keys` maps all of them onto the names of transformers 5's `SwinModel`, which key tracing
uses; the head and the buffers are ignored with a reason, anything else is left for the caller to
report as unknown.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from converters.declaration import KeyNormalization, Shape

CLASSIFIER_PREFIX = "swin."
HEAD_REASON = "the ImageNet classification head of SwinForImageClassification: zoo's Swin is a backbone"
INDEX_REASON = "the relative position index: derived from the window size (a buffer transformers 4.x saved), not a weight"

_BLOCK = r"encoder\.layers\.\d+\.blocks\.\d+\."
# transformers 4.x -> 5.x names inside a block (transformers' `conversion_mapping.py`, entry "swin").
_LEGACY_NAMES = (
    (r"attention\.self\.query\.", "attention.q_proj."),
    (r"attention\.self\.key\.", "attention.k_proj."),
    (r"attention\.self\.value\.", "attention.v_proj."),
    (
        r"attention\.self\.relative_position_bias_table",
        "attention.relative_position_bias.relative_position_bias_table",
    ),
    (r"attention\.output\.dense\.", "attention.o_proj."),
    (r"intermediate\.dense\.", "mlp.fc1."),
    (r"output\.dense\.", "mlp.fc2."),
)
_MODEL_KEY = re.compile(
    r"embeddings\.(patch_embeddings\.projection|norm)\.(weight|bias)"
    rf"|{_BLOCK}(layernorm_before|layernorm_after|attention\.[qkvo]_proj|mlp\.fc1|mlp\.fc2)\.(weight|bias)"
    rf"|{_BLOCK}attention\.relative_position_bias\.relative_position_bias_table"
    r"|encoder\.layers\.\d+\.downsample\.(norm\.weight|norm\.bias|reduction\.weight)"
    r"|layernorm\.(weight|bias)"
)
_INDEX = re.compile(rf"{_BLOCK}attention\.(self|relative_position_bias)\.relative_position_index")
_HEAD = re.compile(r"classifier\.(weight|bias)")


def model_key(file_key: str) -> str:
    """`SwinModel`'s name for a file key: prefix removed, transformers 4.x names made 5.x ones."""
    key = file_key.removeprefix(CLASSIFIER_PREFIX)
    block = re.match(_BLOCK, key)
    if block is None:
        return key
    rest = key[block.end() :]
    for legacy, current in _LEGACY_NAMES:
        rest = re.sub(f"^{legacy}", current, rest)
    return key[: block.end()] + rest


def is_model_key(key: str) -> bool:
    """Whether `key` names a tensor of transformers 5's `SwinModel`."""
    return _MODEL_KEY.fullmatch(key) is not None


def ignored_reason(file_key: str) -> str | None:
    """Why a file key holds no backbone weight (the head, a saved index), or None."""
    key = file_key.removeprefix(CLASSIFIER_PREFIX)
    if _HEAD.fullmatch(key):
        return HEAD_REASON
    if _INDEX.fullmatch(key):
        return INDEX_REASON
    return None


def normalize_swin_keys(shapes: Mapping[str, Shape]) -> KeyNormalization:
    """A transformers Swin file's keys → `SwinModel`'s; unknown keys are neither renamed nor ignored."""
    renames: dict[str, str] = {}
    ignored: dict[str, str] = {}
    for file_key in shapes:
        reason = ignored_reason(file_key)
        if reason is not None:
            ignored[file_key] = reason
        elif is_model_key(model_key(file_key)):
            renames[file_key] = model_key(file_key)
    return KeyNormalization(renames, ignored)


def hub_key(saved_key: str) -> str:
    """The Hub's name for a key `save_pretrained` wrote: the Hub's files are image classifiers."""
    return CLASSIFIER_PREFIX + saved_key


__all__ = [
    "HEAD_REASON",
    "INDEX_REASON",
    "hub_key",
    "ignored_reason",
    "is_model_key",
    "model_key",
    "normalize_swin_keys",
]

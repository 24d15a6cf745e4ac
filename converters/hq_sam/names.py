"""HQ-SAM's original names (`sam_hq_vit_*.pth`, SysCV/sam-hq's `MaskDecoderHQ`) → our adapters' names.

The file holds a whole SAM (the frozen one HQ-SAM was trained on, in Meta's original layout) plus the
HQ modules under `mask_decoder.`: `hf_token`, `hf_mlp` (three linear layers), and three small conv
stacks whose `.0`, `.1` and `.3` hold weights (`.2` is a GELU).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from zoo.errors import CoverageError, few

HQ_PREFIXES = tuple(
    f"mask_decoder.{name}."
    for name in ("hf_token", "hf_mlp", "compress_vit_feat", "embedding_encoder", "embedding_maskfeature")
)
_CONVS = {
    "compress_vit_feat": ("CompressViTFeatures", ("ConvTranspose2d_1", "LayerNorm2d", "ConvTranspose2d_2")),
    "embedding_encoder": ("EmbeddingEncoder", ("ConvTranspose2d_1", "LayerNorm2d", "ConvTranspose2d_2")),
    "embedding_maskfeature": ("MaskFeatures", ("Conv2d_1", "LayerNorm2d", "Conv2d_2")),
}
_CONV_POSITIONS = {"0": 0, "1": 1, "3": 2}  # `.2` is the GELU between them


def is_hq_key(key: str) -> bool:
    """A tensor of the HQ modules (the rest of the file is SAM)."""
    return key.startswith(HQ_PREFIXES)


def _ours(key: str) -> str | None:
    if key == "mask_decoder.hf_token.weight":
        return "HQOutputTokens.HQToken.weight"
    if match := re.fullmatch(r"mask_decoder\.hf_mlp\.layers\.(\d+)\.(weight|bias)", key):
        return f"HQMaskPrediction.HQHypernetwork.Linear_{int(match[1]) + 1}.{match[2]}"
    match = re.fullmatch(r"mask_decoder\.(\w+)\.([013])\.(weight|bias)", key)
    if match and match[1] in _CONVS:
        module, layers = _CONVS[match[1]]
        return f"HQMaskPrediction.{module}.{layers[_CONV_POSITIONS[match[2]]]}.{match[3]}"
    return None


def our_names(keys: Iterable[str]) -> dict[str, str]:
    """HQ file key → our `HQSAMAdapter.weights()` key; a key of no known HQ module is an error."""
    names = {key: _ours(key) for key in keys}
    unknown = sorted(key for key, name in names.items() if name is None)
    if unknown:
        raise CoverageError(
            f"{len(unknown)} HQ tensor(s) of unknown layout: {few(unknown)}",
            tensor=unknown[0],
            hint="is this a variant of HQ-SAM zoo does not know?",
        )
    return {key: name for key, name in names.items() if name is not None}


__all__ = ["HQ_PREFIXES", "is_hq_key", "our_names"]

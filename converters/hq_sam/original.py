"""HQ-SAM's original checkpoints (`sam_hq_vit_{b,l,h}.pth`, SysCV/sam-hq): a plain state dict of the
`segment_anything_hq` package's `Sam` with a `MaskDecoderHQ`.

The file holds a whole SAM (the frozen one HQ-SAM was trained on, in Meta's original layout, which the
sam family converts) and the HQ modules under `mask_decoder.`: `hf_token`, `hf_mlp` (three linear
layers) and three small conv stacks (`compress_vit_feat`, `embedding_encoder`, `embedding_maskfeature`,
whose `.0`, `.1` and `.3` hold weights; `.2` is a GELU). The HQ conversions read the HQ modules, which
are the reference's modules with `mask_decoder.` in front, and ignore the SAM's tensors by name; any
other tensor is an error. The widths come from the shapes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from converters._checkpoints import open_checkpoint
from converters._convert.sources import read_config
from converters._single_file.shapes import ShapeReader
from converters.declaration import SingleFileLayout, UpstreamConfigs
from converters.family import Recognizer, Shapes
from converters.hq_sam.reference import HQ_MODULES, SUBFOLDER, WEIGHTS_NAME
from converters.hq_sam.sizes import LIGHT_DESCRIPTION, LIGHT_VIT_DIM, RELEASES, HQRelease
from converters.sam.original import HQ_MARKER
from converters.sam.original import IGNORED as SAM_IGNORED

DECODER = "mask_decoder."
HQ_PREFIXES = tuple(f"{DECODER}{name}." for name in HQ_MODULES)
VIT_FEATURES_KEY = f"{DECODER}compress_vit_feat.0.weight"  # (vit_dim, C, 2, 2): which SAM it is for
FROZEN_SAM = "part of the frozen SAM HQ-SAM was trained with: the sam family converts it"
_SAM_PATTERNS = (
    "image_encoder.*",
    "prompt_encoder.*",
    *(
        f"{DECODER}{name}.*"
        for name in (
            "transformer",
            "iou_token",
            "mask_tokens",
            "output_upscaling",
            "output_hypernetworks_mlps",
            "iou_prediction_head",
        )
    ),
)
SAM_TENSORS = {**dict.fromkeys(_SAM_PATTERNS, FROZEN_SAM), **SAM_IGNORED}


def is_hq_key(key: str) -> bool:
    """A tensor of the HQ modules (the rest of the file is SAM)."""
    return key.startswith(HQ_PREFIXES)


# -- the layout ------------------------------------------------------------------------------------


def upstream_configs(shapes: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """`MaskDecoderHQ`'s widths from the HQ modules' shapes."""
    read = ShapeReader(shapes, DECODER, "HQ-SAM modules")
    return {
        SUBFOLDER: {
            "transformer_dim": read("hf_token.weight")[1],
            "vit_dim": read("compress_vit_feat.0.weight")[0],
        }
    }


def to_upstream(tensors: Mapping[str, Any], _configs: UpstreamConfigs) -> dict[str, Any]:
    """The HQ modules' tensors under the reference's names (the file's, without `mask_decoder.`); any
    other tensor is left unread, which the coverage check reports."""
    return {key.removeprefix(DECODER): tensor for key, tensor in tensors.items() if is_hq_key(key)}


LAYOUT = SingleFileLayout(
    prefixes=("",),  # every tensor is the SAM's (ignored by name) or the HQ modules': a stray one is an error
    to_upstream=to_upstream,
    upstream_configs=upstream_configs,
    ignored=SAM_TENSORS,
)

# -- recognizing -----------------------------------------------------------------------------------


def is_hq_checkpoint(shapes: Shapes) -> bool:
    """An HQ-SAM checkpoint in SysCV's layout (some HQ module is there)."""
    return any(is_hq_key(key) for key in shapes)


def _reads_vit_width(width: int) -> Callable[[Shapes], bool]:
    def matches(shapes: Shapes) -> bool:
        found = shapes.get(VIT_FEATURES_KEY)
        return HQ_MARKER in shapes and found is not None and found[0] == width

    return matches


def _size_recognizer(release: HQRelease) -> Recognizer:
    return Recognizer(
        f"{release.describe()}, SysCV layout", _reads_vit_width(release.config.vit_dim), release.conversion
    )


COMMAND = "`zoo convert hq_sam --source FILE`, or `zoo convert hq-sam FILE --base BASE`"
RECOGNIZER = Recognizer(f"an HQ-SAM checkpoint (SysCV layout: {COMMAND})", is_hq_checkpoint)
RECOGNIZERS = (
    *(_size_recognizer(release) for release in RELEASES),
    Recognizer(LIGHT_DESCRIPTION, _reads_vit_width(LIGHT_VIT_DIM)),
)

# -- writing ---------------------------------------------------------------------------------------


def write_original(folder: Path, file: Path) -> Path:
    """The HQ modules of a synthetic source, as an original checkpoint holds them (`torch.save`d, next to
    `file` with the releases' `.pth` suffix). The frozen SAM, which these conversions ignore, is left out."""
    source = folder / SUBFOLDER
    read_config(source / "config.json")  # a folder of the reference's, or a clear error
    with open_checkpoint(source / WEIGHTS_NAME) as reader:
        state = {DECODER + key: reader.get(key).clone() for key in sorted(reader.keys())}
    path = file.with_suffix(".pth")
    torch.save(state, path)
    return path


__all__ = [
    "DECODER",
    "HQ_PREFIXES",
    "LAYOUT",
    "RECOGNIZER",
    "RECOGNIZERS",
    "SAM_TENSORS",
    "is_hq_checkpoint",
    "is_hq_key",
    "to_upstream",
    "upstream_configs",
    "write_original",
]

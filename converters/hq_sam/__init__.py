"""HQ-SAM, as an adapter family: its modules from SysCV's `sam_hq_vit_{b,l,h}.pth` checkpoints, for a
Segment Anything base (`zoo convert hq-sam FILE --base BASE`), injected at run time with
`zoo.foundationals.segment_anything.hq_sam.HQSAMAdapter`.

Upstream: https://github.com/SysCV/sam-hq; weights https://huggingface.co/lkeab/hq-sam (Apache 2.0).
It declares no conversion of its own: the files hold a whole frozen SAM plus the HQ modules, and only
the HQ modules are converted, for a base the SAM family converts.
"""

from __future__ import annotations

from converters.family import Family, Recognizer, Shapes
from converters.hq_sam.convert import (
    HQ_FORMAT,
    HQBase,
    HQSamConversionResult,
    convert_hq_sam,
    resolve_base,
)
from converters.hq_sam.names import is_hq_key, our_names
from converters.registry import register
from converters.sam.original import HQ_MARKER


def _original(shapes: Shapes) -> bool:
    return HQ_MARKER in shapes and any(key.startswith("image_encoder.") for key in shapes)


def _ours(shapes: Shapes) -> bool:
    return any(key.startswith("HQOutputTokens.") for key in shapes)


FAMILY = register(
    Family(
        name="hq_sam",
        description="HQ-SAM modules (sam_hq_vit_*.pth) for a Segment Anything base",
        conversions=(),
        recognizers=(
            Recognizer(
                "an HQ-SAM checkpoint (original layout: convert with `zoo convert hq-sam FILE --base BASE`)",
                _original,
            ),
            Recognizer("HQ-SAM modules converted by zoo (load with HQSAMAdapter)", _ours),
        ),
    )
)

__all__ = [
    "FAMILY",
    "HQ_FORMAT",
    "HQBase",
    "HQSamConversionResult",
    "convert_hq_sam",
    "is_hq_key",
    "our_names",
    "resolve_base",
]

"""DINOv2 backbones, ViT-S/14, B/14, L/14 and g/14, with and without registers: `dinov2.vits14`,
`dinov2.vits14_reg4`, ... (`zoo convert dinov2 --source X` converts the release X is).

Sources: transformers folders (`facebook/dinov2-*`, `facebook/dinov2-with-registers-*`, saved by
transformers 4.x or 5.x) and the original release files (`dinov2_vits14_pretrain.pth`, ...).
Upstream: https://github.com/facebookresearch/dinov2 (Apache-2.0).
"""

from __future__ import annotations

from converters.dinov2.conversion import release_conversion
from converters.dinov2.original import original_recognizer
from converters.dinov2.original_writer import write_original_file
from converters.dinov2.recognizers import TRANSFORMERS
from converters.dinov2.releases import FAMILY_NAME, RELEASES
from converters.family import Family, SingleFileFormat
from converters.registry import register

CONVERSIONS = tuple(release_conversion(release) for release in RELEASES)

FAMILY = register(
    Family(
        name=FAMILY_NAME,
        description="DINOv2 vision backbones (ViT-S/B/L/g 14, with and without registers)",
        conversions=CONVERSIONS,
        single_file=SingleFileFormat(
            original_recognizer(FAMILY_NAME), write_original_file, per_conversion=True
        ),
        recognizers=TRANSFORMERS,
        alternatives=True,
    )
)

__all__ = ["CONVERSIONS", "FAMILY"]

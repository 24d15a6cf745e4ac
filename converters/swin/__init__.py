"""Swin Transformer (V1) backbones: `swin.backbone` (any size, from a transformers folder or an original
release file) and the pinned releases `swin.tiny`, `swin.small`, `swin.base`, `swin.large` (224 pixels,
window 7), `swin.base_window12` and `swin.large_window12` (384 pixels, window 12).

Upstream: https://github.com/microsoft/Swin-Transformer (MIT) and its Hub copies `microsoft/swin-*`
(transformers `SwinForImageClassification` folders, tagged apache-2.0); converted onto
`zoo.foundationals.swin.SwinTransformer`, without the ImageNet head.
"""

from __future__ import annotations

from converters.family import Family, SingleFileFormat
from converters.registry import register
from converters.swin.conversions import recognizer, size_check, swin_conversion
from converters.swin.original import LAYOUT, RECOGNIZER
from converters.swin.original_writer import write_original_file
from zoo.foundationals.swin.transformer import SwinConfig

# name -> (Hub repository, full-size config, in words)
RELEASES: dict[str, tuple[str, SwinConfig, str]] = {
    "tiny": ("microsoft/swin-tiny-patch4-window7-224", SwinConfig.tiny(), "Swin-T"),
    "small": ("microsoft/swin-small-patch4-window7-224", SwinConfig.small(), "Swin-S"),
    "base": ("microsoft/swin-base-patch4-window7-224", SwinConfig.base(), "Swin-B"),
    "large": ("microsoft/swin-large-patch4-window7-224", SwinConfig.large(), "Swin-L"),
    "base_window12": ("microsoft/swin-base-patch4-window12-384", SwinConfig.base_window12(), "Swin-B 384"),
    "large_window12": ("microsoft/swin-large-patch4-window12-384", SwinConfig.large_window12(), "Swin-L 384"),
}
SIZES = {words: config for _repo, config, words in RELEASES.values()}
TWIN = SwinConfig.toy()  # every conversion's `--synthetic tiny` source

BACKBONE = swin_conversion(
    "swin.backbone",
    "Swin V1 backbone of any size (transformers SwinModel, or an original release file)",
    RELEASES["tiny"][0],
    SwinConfig.tiny(),
    TWIN,
    single_file=LAYOUT,
)
VARIANTS = tuple(
    swin_conversion(
        f"swin.{name}",
        f"{words} backbone (transformers SwinModel, {repo})",
        repo,
        config,
        TWIN,
        family_check=size_check(f"swin.{name}", config, TWIN, SIZES),
    )
    for name, (repo, config, words) in RELEASES.items()
)

FAMILY = register(
    Family(
        name="swin",
        description="Swin Transformer (V1) vision backbones: shifted-window attention, per-stage features",
        conversions=(BACKBONE,),
        variants=VARIANTS,
        single_file=SingleFileFormat(RECOGNIZER, write_synthetic=write_original_file),
        recognizers=(
            *(
                recognizer(f"a {words} backbone (transformers layout)", config, f"swin.{name}")
                for name, (_repo, config, words) in RELEASES.items()
            ),
            recognizer("a Swin backbone (transformers layout)", None, BACKBONE.name),
        ),
    )
)

__all__ = ["BACKBONE", "FAMILY", "RELEASES", "VARIANTS"]

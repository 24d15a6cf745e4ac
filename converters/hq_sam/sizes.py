"""The released HQ-SAM files (one per size of SAM), and telling a file's size from its HQ modules.

Each `sam_hq_vit_{b,l,h}.pth` of lkeab/hq-sam holds HQ modules for one released SAM, told apart by the
width of the early ViT features they read (768, 1024, 1280). Modules of no released width (a test twin)
fit every conversion, as their shapes decide everything. Light HQ-SAM (`sam_hq_vit_tiny.pth`) reads a
TinyViT encoder, which zoo does not build: its file is refused by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from converters.sam.sizes import RELEASES as SAM_RELEASES
from converters.sam.sizes import Release as SAMRelease
from zoo.foundationals.segment_anything.hq_sam import HQSAMConfig

FAMILY_NAME = "hq_sam"
LIGHT_VIT_DIM = 160  # Light HQ-SAM's TinyViT (`sam_hq_vit_tiny.pth`)
LIGHT_DESCRIPTION = (
    "Light HQ-SAM (sam_hq_vit_tiny.pth), whose SAM has a TinyViT image encoder: zoo builds no TinyViT, "
    "so it converts neither"
)


@dataclass(frozen=True)
class HQRelease:
    """One released HQ-SAM file.

    Attributes:
        sam: The released SAM it was trained on (its conversion's component names this one's too).
        config: Its modules' config.
    """

    sam: SAMRelease
    config: HQSAMConfig

    @property
    def name(self) -> str:
        return self.sam.name

    @property
    def hub_file(self) -> str:
        """Its file in lkeab/hq-sam."""
        return f"sam_hq_{self.sam.name}.pth"

    @property
    def conversion(self) -> str:
        """Its conversion's name."""
        return f"{FAMILY_NAME}.{self.name}"

    def describe(self) -> str:
        return f"HQ-SAM {self.sam.title} ({self.hub_file}: early ViT features of width {self.config.vit_dim})"


RELEASES = tuple(HQRelease(sam, HQSAMConfig.for_model(sam.config)) for sam in SAM_RELEASES)


def release_of(config: HQSAMConfig) -> HQRelease | None:
    """The released file whose modules have this config's widths, if any."""
    widths = (config.vit_dim, config.embed_dim)
    return next((r for r in RELEASES if (r.config.vit_dim, r.config.embed_dim) == widths), None)


def size_check(expected: HQRelease) -> Callable[[HQSAMConfig], str | None]:
    """A conversion's `family_check`: None unless the config is Light HQ-SAM's or another released size's."""

    def check(config: HQSAMConfig) -> str | None:
        if config.vit_dim == LIGHT_VIT_DIM:
            return f"it holds {LIGHT_DESCRIPTION}"
        found = release_of(config)
        if found is None or found is expected:
            return None
        return f"it holds {found.describe()}, not {expected.describe()}: convert it as {found.conversion}"

    return check


__all__ = [
    "FAMILY_NAME",
    "LIGHT_DESCRIPTION",
    "LIGHT_VIT_DIM",
    "RELEASES",
    "HQRelease",
    "release_of",
    "size_check",
]

"""The released sizes of Segment Anything, and telling a source's size from its config.

Each size is its own conversion (`sam.vit_b`, `sam.vit_l`, `sam.vit_h`): a checkpoint of one size named
as another is an error naming both. A config of none of the released sizes (a test twin, a pruned
model) fits every conversion, as its shapes decide everything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from zoo.foundationals.segment_anything.image_encoder import ImageEncoderConfig
from zoo.foundationals.segment_anything.model import SegmentAnythingConfig


@dataclass(frozen=True)
class Release:
    """One released size.

    Attributes:
        name: The conversion's component (`vit_b`).
        title: In words (`ViT-B`).
        config: Its full config.
        hub_repo: transformers' port on the Hub.
        original_file: Meta's original checkpoint.
    """

    name: str
    title: str
    config: SegmentAnythingConfig
    hub_repo: str
    original_file: str

    def describe(self) -> str:
        encoder = self.config.image_encoder
        return f"SAM {self.title} (width {encoder.embed_dim}, {encoder.depth} blocks)"


RELEASES = (
    Release("vit_b", "ViT-B", SegmentAnythingConfig.vit_b(), "facebook/sam-vit-base", "sam_vit_b_01ec64.pth"),
    Release(
        "vit_l", "ViT-L", SegmentAnythingConfig.vit_l(), "facebook/sam-vit-large", "sam_vit_l_0b3195.pth"
    ),
    Release("vit_h", "ViT-H", SegmentAnythingConfig.vit_h(), "facebook/sam-vit-huge", "sam_vit_h_4b8939.pth"),
)


def _shape(encoder: ImageEncoderConfig) -> tuple[int, int, int, tuple[int, ...]]:
    return encoder.embed_dim, encoder.depth, encoder.num_heads, encoder.global_attention_blocks


def release_of(config: SegmentAnythingConfig) -> Release | None:
    """The released size whose image encoder this config has, if any."""
    return next(
        (size for size in RELEASES if _shape(size.config.image_encoder) == _shape(config.image_encoder)), None
    )


def size_check(expected: Release) -> Callable[[SegmentAnythingConfig], str | None]:
    """A conversion's `family_check`: None unless the config is another released size."""

    def check(config: SegmentAnythingConfig) -> str | None:
        found = release_of(config)
        if found is None or found is expected:
            return None
        return f"it holds {found.describe()}, not {expected.describe()}: convert it as sam.{found.name}"

    return check


__all__ = ["RELEASES", "Release", "release_of", "size_check"]

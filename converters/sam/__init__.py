"""Segment Anything: `sam.vit_b`, `sam.vit_l`, `sam.vit_h`, each the whole model (image encoder, prompt
encoder, mask decoder) in one output, from transformers' `SamModel` folders or Meta's original checkpoints.

Upstream: https://github.com/facebookresearch/segment-anything (Apache 2.0 code and weights);
transformers' port: https://huggingface.co/facebook/sam-vit-base (-large, -huge), Apache 2.0.

`zoo convert sam --source FILE_OR_FOLDER` converts the size the source holds (the family's conversions
are alternatives, one per released size); a source of one size named as another is an error naming both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from converters.declaration import Conversion, PinnedFile, Size, UpstreamConfigs, UpstreamPart
from converters.family import Family, Recognizer, Shapes, SingleFileFormat
from converters.registry import register
from converters.sam.configs import derive_config, upstream_config
from converters.sam.original import LAYOUT, RECOGNIZER, SUBFOLDER
from converters.sam.original_writer import write_original
from converters.sam.reference import example_inputs, overrides, run_ours, run_transformers, transformers_sam
from converters.sam.sizes import RELEASES, Release, size_check
from zoo.foundationals.segment_anything.model import SegmentAnything, SegmentAnythingConfig

LICENSE = "apache-2.0"
UNPINNED = "not pinned yet: record revision and sha256 on a machine with Hub access"


def _part(release: Release) -> UpstreamPart:
    pinned = PinnedFile(release.hub_repo, "model.safetensors", None, None, None, LICENSE, UNPINNED)
    return UpstreamPart(SUBFOLDER, "transformers.SamModel", transformers_sam, pinned=pinned, repo_folder="")


def _synthetic(release: Release) -> Callable[[Size], dict[str, dict[str, Any]]]:
    def configs(size: Size) -> dict[str, dict[str, Any]]:
        config = release.config if size == "full" else SegmentAnythingConfig.tiny()
        return {SUBFOLDER: upstream_config(config)}

    return configs


def _derive(configs: UpstreamConfigs) -> SegmentAnythingConfig:
    return derive_config(configs[SUBFOLDER])


def _conversion(release: Release) -> Conversion:
    return Conversion(
        name=f"sam.{release.name}",
        description=f"Segment Anything {release.title}: image encoder, prompt encoder and mask decoder",
        hub_repo=release.hub_repo,
        license=LICENSE,
        parts=(_part(release),),
        derive_config=_derive,
        build_target=SegmentAnything,
        example_inputs=example_inputs,
        run_upstream=run_transformers,
        run_target=run_ours,
        overrides=overrides,
        synthetic_configs=_synthetic(release),
        single_file=LAYOUT,
        family_check=size_check(release),
        upstream_configs_of=lambda config: {SUBFOLDER: upstream_config(config)},
    )


CONVERSIONS = tuple(_conversion(release) for release in RELEASES)
VIT_B, VIT_L, VIT_H = CONVERSIONS


def _transformers_layout(width: int | None) -> Callable[[Shapes], bool]:
    """A transformers `SamModel` state dict (of this encoder width; None: any)."""

    def matches(shapes: Shapes) -> bool:
        patches = shapes.get("vision_encoder.patch_embed.projection.weight")
        if patches is None or "mask_decoder.iou_token.weight" not in shapes:
            return False
        return width is None or patches[0] == width

    return matches


def _recognizers() -> tuple[Recognizer, ...]:
    by_size = tuple(
        Recognizer(
            f"SAM {release.title} (transformers SamModel layout)",
            _transformers_layout(release.config.image_encoder.embed_dim),
            f"sam.{release.name}",
        )
        for release in RELEASES
    )
    other = Recognizer(
        "a Segment Anything model of no released size (transformers layout)", _transformers_layout(None)
    )
    return (*by_size, other)


FAMILY = register(
    Family(
        name="sam",
        description="Segment Anything ViT-B/L/H: image encoder, prompt encoder, mask decoder",
        conversions=CONVERSIONS,
        single_file=SingleFileFormat(
            RECOGNIZER, lambda folder, file: write_original(folder, file, VIT_B.parts[0]), per_conversion=True
        ),
        recognizers=_recognizers(),
        alternatives=True,
    )
)

__all__ = ["CONVERSIONS", "FAMILY", "LICENSE", "VIT_B", "VIT_H", "VIT_L"]

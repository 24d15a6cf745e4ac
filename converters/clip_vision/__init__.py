"""CLIP image encoders: `clip_vision.vit_h14`, `clip_vision.vit_big_g14` (the image encoders of
h94/IP-Adapter) and the `clip_vision.vit_l14` variant (OpenAI CLIP ViT-L/14).

Sources: transformers `CLIPVisionModelWithProjection` folders (h94/IP-Adapter's `models/image_encoder`
and `sdxl_models/image_encoder`; a diffusers pipeline's `image_encoder`; a whole CLIP model's folder,
whose text tower is ignored) and OpenCLIP checkpoints (`open_clip_pytorch_model.bin`, `visual.*`).
The conversions are alternatives: `zoo convert clip_vision --source X` converts the one X fits.

Upstream: https://huggingface.co/h94/IP-Adapter (Apache-2.0), https://huggingface.co/openai/clip-vit-large-patch14 (MIT).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from converters._tracing import Overrides
from converters.clip_vision.kinds import EncoderKind
from converters.clip_vision.open_clip_layout import PREFIX, open_clip_layout, write_open_clip_file
from converters.clip_vision.tiny import TINY
from converters.clip_vision.transformers_layout import (
    SUBFOLDER,
    derive_image_encoder_config,
    example_pixels,
    image_encoder_part,
    run_encoder,
    run_reference,
    upstream_image_encoder_config,
)
from converters.declaration import Conversion, PinnedFile, Size
from converters.family import Family, Recognizer, Shapes, SingleFileFormat
from converters.registry import register
from zoo.foundationals.clip.image_encoder import CLIPImageEncoder, CLIPImageEncoderConfig

IP_ADAPTER_REPO = "h94/IP-Adapter"
IP_ADAPTER_LICENSE = "apache-2.0"
OPENAI_REPO = "openai/clip-vit-large-patch14"
OPENAI_LICENSE = "mit"
UNPINNED = "not pinned yet: record revision and sha256 on a machine with Hub access"
PATCH_EMBEDDING = "vision_model.embeddings.patch_embedding.weight"
OPEN_CLIP_PATCHES = f"{PREFIX}conv1.weight"


def _pin(repo: str, filename: str, license: str) -> PinnedFile:
    return PinnedFile(repo, filename, None, None, None, license, UNPINNED)


def image_encoder_conversion(
    component: str,
    kind: EncoderKind,
    full: CLIPImageEncoderConfig,
    hub: tuple[str, str, str],
    repo_folder: str,
) -> Conversion:
    """One image encoder: `hub` is (repo, licence, weights file in the repo)."""
    repo, license, filename = hub

    def synthetic(size: Size) -> dict[str, dict[str, Any]]:
        return {SUBFOLDER: upstream_image_encoder_config(full) if size == "full" else dict(TINY[component])}

    return Conversion(
        name=f"clip_vision.{component}",
        description=f"CLIP {kind.name} image encoder with projection (transformers CLIPVisionModelWithProjection)",
        hub_repo=repo,
        license=license,
        parts=(image_encoder_part(_pin(repo, filename, license), repo_folder),),
        derive_config=lambda configs: derive_image_encoder_config(configs[SUBFOLDER]),
        build_target=CLIPImageEncoder,
        example_inputs=example_pixels,
        run_upstream=run_reference,
        run_target=run_encoder,
        overrides=lambda _config: Overrides(),
        synthetic_configs=synthetic,
        single_file=open_clip_layout(kind),
        family_check=kind.misfit,
        upstream_configs_of=lambda config: {SUBFOLDER: upstream_image_encoder_config(config)},
    )


VIT_H14_KIND = EncoderKind.of("ViT-H/14", CLIPImageEncoderConfig.vit_h14())
VIT_BIG_G14_KIND = EncoderKind.of("ViT-bigG/14", CLIPImageEncoderConfig.vit_big_g14())
VIT_L14_KIND = EncoderKind.of("ViT-L/14", CLIPImageEncoderConfig.vit_l14())
KINDS = (VIT_H14_KIND, VIT_BIG_G14_KIND, VIT_L14_KIND)

VIT_H14 = image_encoder_conversion(
    "vit_h14",
    VIT_H14_KIND,
    CLIPImageEncoderConfig.vit_h14(),
    (IP_ADAPTER_REPO, IP_ADAPTER_LICENSE, "models/image_encoder/model.safetensors"),
    "models/image_encoder",
)
VIT_BIG_G14 = image_encoder_conversion(
    "vit_big_g14",
    VIT_BIG_G14_KIND,
    CLIPImageEncoderConfig.vit_big_g14(),
    (IP_ADAPTER_REPO, IP_ADAPTER_LICENSE, "sdxl_models/image_encoder/model.safetensors"),
    "sdxl_models/image_encoder",
)
VIT_L14 = image_encoder_conversion(
    "vit_l14",
    VIT_L14_KIND,
    CLIPImageEncoderConfig.vit_l14(),
    (OPENAI_REPO, OPENAI_LICENSE, "model.safetensors"),
    "",
)


# -- recognizing files -------------------------------------------------------------------------------


def _width(shapes: Shapes, key: str) -> int | None:
    shape = shapes.get(key)
    return shape[0] if shape is not None else None


def _declared_width(shapes: Shapes, key: str) -> bool:
    return _width(shapes, key) in {kind.hidden_size for kind in KINDS}


def _of_width(key: str, width: int) -> Callable[[Shapes], bool]:
    return lambda shapes: _width(shapes, key) == width


def _undeclared_open_clip(shapes: Shapes) -> bool:
    return OPEN_CLIP_PATCHES in shapes and not _declared_width(shapes, OPEN_CLIP_PATCHES)


def _recognizers(conversion: Conversion, kind: EncoderKind) -> tuple[Recognizer, ...]:
    return (
        Recognizer(
            f"a CLIP {kind.name} image encoder (transformers layout)",
            _of_width(PATCH_EMBEDDING, kind.hidden_size),
            conversion.name,
        ),
        Recognizer(
            f"an OpenCLIP checkpoint with a {kind.name} image tower (visual.*)",
            _of_width(OPEN_CLIP_PATCHES, kind.hidden_size),
            conversion.name,
        ),
    )


FAMILY = register(
    Family(
        name="clip_vision",
        description="CLIP image encoders (ViT-H/14, ViT-bigG/14, ViT-L/14) with their projection",
        conversions=(VIT_H14, VIT_BIG_G14),
        variants=(VIT_L14,),
        single_file=SingleFileFormat(
            # The OpenCLIP files of declared sizes are named by the recognizers below.
            Recognizer(
                "an OpenCLIP checkpoint with an image tower of no declared size", _undeclared_open_clip
            ),
            write_synthetic=write_open_clip_file,
            per_conversion=True,
        ),
        recognizers=(
            *_recognizers(VIT_H14, VIT_H14_KIND),
            *_recognizers(VIT_BIG_G14, VIT_BIG_G14_KIND),
            *_recognizers(VIT_L14, VIT_L14_KIND),
            Recognizer(
                "a CLIP image encoder (transformers layout) of no declared size",
                lambda shapes: PATCH_EMBEDDING in shapes and not _declared_width(shapes, PATCH_EMBEDDING),
                generic=True,
            ),
        ),
        alternatives=True,
    )
)

__all__ = ["FAMILY", "VIT_BIG_G14", "VIT_H14", "VIT_L14", "image_encoder_conversion"]

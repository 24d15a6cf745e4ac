"""Tests on tensor names and shapes that tell Stable Diffusion components apart, for `zoo inspect`.

The families combine them into their `Recognizer`s; each test looks at names and shapes only.
"""

from __future__ import annotations

from collections.abc import Callable

from converters.family import Recognizer, Shapes

_CLIP_EMBEDDING = "embeddings.token_embedding.weight"


def _has(shapes: Shapes, prefix: str) -> bool:
    return any(key.startswith(prefix) for key in shapes)


def diffusers_unet(shapes: Shapes) -> bool:
    """A diffusers `UNet2DConditionModel` state dict."""
    return "conv_in.weight" in shapes and _has(shapes, "down_blocks.") and _has(shapes, "up_blocks.")


def with_added_conditioning(shapes: Shapes) -> bool:
    """The UNet takes SDXL-style added text/time conditioning."""
    return _has(shapes, "add_embedding.")


def cross_attention_at_first_level(shapes: Shapes) -> bool:
    """The UNet's first level has attention (SD 1.x; SDXL's first level has none)."""
    return _has(shapes, "down_blocks.0.attentions.")


def diffusers_autoencoder(shapes: Shapes) -> bool:
    """A diffusers `AutoencoderKL` state dict."""
    return _has(shapes, "encoder.conv_in.") and _has(shapes, "decoder.conv_in.")


def clip_text_tower(width: int | None) -> Callable[[Shapes], bool]:
    """A transformers CLIP text tower (with or without `text_model.`) of this width (None: any)."""

    def matches(shapes: Shapes) -> bool:
        embedding = shapes.get(f"text_model.{_CLIP_EMBEDDING}") or shapes.get(_CLIP_EMBEDDING)
        return embedding is not None and (width is None or embedding[1] == width)

    return matches


def original_unet(shapes: Shapes) -> bool:
    """The UNet of an original single file (LDM / SGM layout)."""
    return _has(shapes, "model.diffusion_model.")


GENERIC = (
    Recognizer("a UNet (diffusers layout) of no declared family", diffusers_unet, generic=True),
    Recognizer(
        "a latent diffusion UNet (original single file, unknown text encoder)", original_unet, generic=True
    ),
    Recognizer(
        "a latent diffusion autoencoder (diffusers AutoencoderKL layout; SD 1.5 and SDXL share its shapes)",
        diffusers_autoencoder,
        generic=True,
    ),
    Recognizer("a CLIP text encoder (transformers layout)", clip_text_tower(None), generic=True),
)

__all__ = [
    "GENERIC",
    "clip_text_tower",
    "cross_attention_at_first_level",
    "diffusers_autoencoder",
    "diffusers_unet",
    "original_unet",
    "with_added_conditioning",
]

"""How `zoo inspect` tells IP-Adapter files apart: the variant and the base, from names and shapes alone."""

from __future__ import annotations

from collections.abc import Callable

from converters.family import Recognizer, Shapes
from converters.ip_adapter.original import (
    IMAGE_PROJ,
    IP_ADAPTER,
    attentions_from_shapes,
    expected_attentions,
    projection_from_shapes,
    tokens_of,
)
from converters.ip_adapter.reference import PROJECTION_PREFIX, derive_ip_adapter_config
from converters.ip_adapter.variants import IPAdapterVariant
from zoo.errors import ConfigError

_KEY_PROJECTION_SUFFIX = ".processor.to_k_ip.0.weight"
_FACEID_KEYS = ("perceiver_resampler.", "norm.weight")
_BASE_OR_FULL_FACE = ("proj.weight", "proj.3.weight")


def is_original(shapes: Shapes) -> bool:
    """An original IP-Adapter file: both groups of keys."""
    return any(k.startswith(IMAGE_PROJ) for k in shapes) and any(k.startswith(IP_ADAPTER) for k in shapes)


def is_faceid(shapes: Shapes) -> bool:
    """An original FaceID file: an ID-embedding projection, or LoRA weights beside the projections.

    The dispatch is diffusers' loader's: a base projection's `proj.weight` and a full-face one's
    `proj.3.weight` come first; then a `perceiver_resampler` or a bare `norm` is a FaceID projection.
    """
    if not is_original(shapes):
        return False
    if any("_lora." in key for key in shapes if key.startswith(IP_ADAPTER)):
        return True
    known = any(f"{IMAGE_PROJ}{key}" in shapes for key in _BASE_OR_FULL_FACE)
    return not known and any(key.startswith(tuple(IMAGE_PROJ + p for p in _FACEID_KEYS)) for key in shapes)


def _is_variant(variant: IPAdapterVariant) -> Callable[[Shapes], bool]:
    """A full-size original file of this variant (projection, feature width and base all match)."""

    def matches(shapes: Shapes) -> bool:
        if not is_original(shapes) or is_faceid(shapes):
            return False
        unet = variant.unet("full")
        try:
            projection = projection_from_shapes(shapes)
            attentions = attentions_from_shapes(shapes)
            upstream = {"unet": unet, "image_projection": projection, "num_tokens": tokens_of(projection)}
            config = derive_ip_adapter_config(upstream)
        except ConfigError:
            return False
        return config == variant.full and attentions == expected_attentions(unet)

    return matches


def is_diffusers_serialisation(shapes: Shapes) -> bool:
    """The adapter's tensors under a UNet's names (without the UNet itself)."""
    projection = any(key.startswith(PROJECTION_PREFIX) for key in shapes)
    return (
        projection
        and "conv_in.weight" not in shapes
        and any(k.endswith(_KEY_PROJECTION_SUFFIX) for k in shapes)
    )


def variant_recognizer(variant: IPAdapterVariant, conversion: str) -> Recognizer:
    """Names a full-size original file of `variant`: what it is, its base and its image encoder."""
    feature = "hidden states" if variant.full.reads_hidden_states else "image embeddings"
    return Recognizer(
        f"{variant.description} (original layout): fits the {variant.base_title} UNet, "
        f"reads {variant.encoder} {feature} ({variant.full.image_embedding_dim} wide)",
        _is_variant(variant),
        conversion,
    )


def unknown_original(variants: tuple[IPAdapterVariant, ...]) -> Callable[[Shapes], bool]:
    """An original IP-Adapter file (not FaceID) of no declared variant (tiny twins included)."""
    checks = [_is_variant(variant) for variant in variants]
    return lambda shapes: is_original(shapes) and not is_faceid(shapes) and not any(c(shapes) for c in checks)


FACEID = Recognizer("an IP-Adapter FaceID file: zoo does not convert it yet", is_faceid)
DIFFUSERS = Recognizer(
    "an IP-Adapter in diffusers' serialisation (the adapter's tensors under a UNet's names)",
    is_diffusers_serialisation,
)

__all__ = [
    "DIFFUSERS",
    "FACEID",
    "is_diffusers_serialisation",
    "is_faceid",
    "is_original",
    "unknown_original",
    "variant_recognizer",
]

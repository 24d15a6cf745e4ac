"""How `zoo inspect` tells DINOv2 checkpoints: transformers files by release, original files at all
(their conversion, `dinov2`, picks the release from the shapes)."""

from __future__ import annotations

from converters.dinov2.releases import RELEASES, Release
from converters.family import Recognizer, Shapes

CLASS_TOKEN = "embeddings.cls_token"
REGISTERS = "embeddings.register_tokens"
SWIGLU_MARKERS = ("encoder.layer.0.mlp.weights_in.weight", "encoder.layer.0.mlp.gate_proj.weight")


def looks_transformers(shapes: Shapes) -> bool:
    """A transformers DINOv2 state dict (4.x or 5.x names): a mask token and layer scales."""
    return all(
        key in shapes
        for key in (CLASS_TOKEN, "embeddings.mask_token", "encoder.layer.0.layer_scale1.lambda1")
    )


def _is(release: Release, shapes: Shapes) -> bool:
    config = release.config
    return (
        looks_transformers(shapes)
        and shapes[CLASS_TOKEN][-1] == config.hidden_size
        and (shapes[REGISTERS][1] if REGISTERS in shapes else 0) == config.num_registers
        and any(key in shapes for key in SWIGLU_MARKERS) == (config.feedforward == "swiglu")
    )


def _recognizer(release: Release) -> Recognizer:
    return Recognizer(
        f"a DINOv2 {release.title} backbone (transformers layout)",
        lambda shapes: _is(release, shapes),
        release.name,
    )


TRANSFORMERS = (
    *(_recognizer(release) for release in RELEASES),
    Recognizer("a DINOv2 backbone of no released size (transformers layout)", looks_transformers),
)

__all__ = ["TRANSFORMERS", "looks_transformers"]

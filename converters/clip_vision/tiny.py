"""The image encoders' tiny twins: the transformers configs of `--synthetic tiny` sources and the tests.

Each keeps what tells its encoder apart and what an OpenCLIP file's shapes cannot show (head size,
activation, patch size: see `kinds.py`), with two heads, two layers and 28×28 images (four patches).
"""

from __future__ import annotations

from typing import Any

from converters.clip_vision.transformers_layout import upstream_image_encoder_config
from zoo.foundationals.clip.image_encoder import CLIPImageEncoderConfig

_TINY_IMAGE = 28
_HEADS = 2
_LAYERS = 2


def _tiny(head_dim: int, activation: Any, projection_dim: int) -> dict[str, Any]:
    hidden = head_dim * _HEADS
    config = CLIPImageEncoderConfig(
        image_size=_TINY_IMAGE,
        hidden_size=hidden,
        num_layers=_LAYERS,
        num_heads=_HEADS,
        intermediate_size=2 * hidden,
        activation=activation,
        projection_dim=projection_dim,
    )
    return upstream_image_encoder_config(config)


TINY: dict[str, dict[str, Any]] = {
    "vit_l14": _tiny(64, "quick_gelu", 16),
    "vit_h14": _tiny(80, "gelu", 24),
    "vit_big_g14": _tiny(104, "gelu", 32),
}

__all__ = ["TINY"]

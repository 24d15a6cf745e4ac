"""DINOv2 vision backbones (with and without registers) and their image preprocessing."""

from zoo.foundationals.dinov2.vision_transformer import DINOv2, DINOv2Config, DINOv2Output

__all__ = ["DINOv2", "DINOv2Config", "DINOv2Output"]

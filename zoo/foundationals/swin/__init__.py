"""Swin Transformer backbones (V1): shifted-window attention, patch merging, per-stage features."""

from zoo.foundationals.swin.transformer import SwinConfig, SwinOutput, SwinTransformer

__all__ = ["SwinConfig", "SwinOutput", "SwinTransformer"]

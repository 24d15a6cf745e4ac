"""Segment Anything's prompt encoder: points and boxes become sparse tokens, a mask a dense map.

Paper: Kirillov et al., "Segment Anything" (ICCV 2023, https://arxiv.org/abs/2304.02643), appendix A
("Prompt encoder"); the point positions are encoded with random Fourier features (Tancik et al.,
https://arxiv.org/abs/2006.10739).
Upstream: https://github.com/facebookresearch/segment-anything (`modeling/prompt_encoder.py`), and
transformers' `SamPromptEncoder`.
Weights: the SAM ViT-B/L/H checkpoints are released under the Apache 2.0 licence.

    points (B, N, 2), labels (B, N) ─┐
    boxes (B, 4) → two corners ──────┴─► Fourier features + one learned vector per label ─► (B, N', C)
    mask logits (B, 1, 4h, 4w) ─► two stride-2 convolutions, a 1×1 ─► (B, C, h, w)   (else one learned
                                                                                       vector everywhere)

Point labels: 1 foreground, 0 background, -1 "not a point" (padding); box corners are points labelled 2
(top-left) and 3 (bottom-right). Coordinates are pixels of the model's input frame (the resized image).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

import zoo.fluxion as fl
from zoo.fluxion.layers.weighted import Device, DType
from zoo.foundationals.segment_anything.layers import LayerNorm2d

NOT_A_POINT = -1
BOX_CORNER_LABELS = (2, 3)
LABELS = 5  # not a point, background, foreground, box top-left, box bottom-right

# -- config -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PromptEncoderConfig:
    """Architecture of the prompt encoder (defaults: every released SAM).

    Attributes:
        embed_dim: Width of the prompt embeddings (the mask decoder's width).
        image_size: Side of the model's input frame, in which coordinates are given.
        embedding_size: Side of the image embedding (the dense embeddings' side).
        mask_channels: Hidden channels of the mask encoder (its first convolution has a quarter).
        layer_norm_eps: Epsilon of the mask encoder's channel-wise layer norms.
    """

    embed_dim: int = 256
    image_size: int = 1024
    embedding_size: int = 64
    mask_channels: int = 16
    layer_norm_eps: float = 1e-6

    def __post_init__(self) -> None:
        if self.embed_dim % 2:
            raise ValueError(f"embed_dim must be even (sines and cosines), got {self.embed_dim}")
        if self.mask_channels % 4:
            raise ValueError(f"mask_channels must be a multiple of 4, got {self.mask_channels}")

    @property
    def mask_size(self) -> int:
        """Side of the mask prompts (and of the low-resolution masks the decoder predicts)."""
        return 4 * self.embedding_size

    @classmethod
    def tiny(cls) -> PromptEncoderConfig:
        """The prompt encoder of `SegmentAnythingConfig.tiny()`."""
        return cls(embed_dim=32, image_size=96, embedding_size=6, mask_channels=8)


# -- building blocks --------------------------------------------------------------------------------


class FourierFeatures(fl.WeightedModule):
    """Coordinates in [0, 1]² (…, 2) → (…, 2·F): sin and cos of 2π·(2c − 1)·G, G a (2, F) random matrix."""

    def __init__(self, features: int, device: Device = None, dtype: DType = None) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(2, features, device=device, dtype=dtype))

    def forward(self, coordinates: torch.Tensor) -> torch.Tensor:
        projected = 2 * math.pi * ((2 * coordinates - 1) @ self.weight)
        return torch.cat([torch.sin(projected), torch.cos(projected)], dim=-1)


class PixelCenters(fl.ContextModule):
    """Pixel coordinates (x, y) in an `image_size` frame → the pixels' centres, in [0, 1]."""

    def __init__(self, image_size: int) -> None:
        super().__init__()
        self.image_size = image_size

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return (points + 0.5) / self.image_size

    def extra_repr(self) -> str:
        return f"image_size={self.image_size}"


class LabelEmbedding(fl.Embedding):
    """Adds one learned vector per point label; a "not a point" keeps only its vector (no position).

    Rows: not a point, background, foreground, box top-left, box bottom-right (label + 1).
    """

    def forward(self, encoded: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:  # pyright: ignore[reportIncompatibleMethodOverride]
        positions = torch.where((labels == NOT_A_POINT)[..., None], 0.0, encoded)
        return positions + super().forward(labels.long() + 1)


class PointEncoder(fl.Chain):
    """(points (B, N, 2) in pixels, labels (B, N)) → sparse prompt embeddings (B, N, C)."""

    def __init__(self, config: PromptEncoderConfig, device: Device = None, dtype: DType = None) -> None:
        super().__init__(
            fl.Parallel(
                fl.Chain(
                    fl.GetArg(0),
                    PixelCenters(config.image_size),
                    FourierFeatures(config.embed_dim // 2, device=device, dtype=dtype),
                ),
                fl.GetArg(1),
            ),
            LabelEmbedding(LABELS, config.embed_dim, device=device, dtype=dtype),
        )

    @property
    def fourier_features(self) -> FourierFeatures:
        """The random Fourier features, shared with the image's dense positional encoding."""
        return self.ensure_find(FourierFeatures)


class MaskEncoder(fl.Chain):
    """Mask logits (B, 1, 4h, 4w) → dense prompt embeddings (B, C, h, w)."""

    def __init__(self, config: PromptEncoderConfig, device: Device = None, dtype: DType = None) -> None:
        hidden, quarter, eps = config.mask_channels, config.mask_channels // 4, config.layer_norm_eps
        super().__init__(
            fl.Conv2d(1, quarter, 2, stride=2, device=device, dtype=dtype),
            LayerNorm2d(quarter, eps=eps, device=device, dtype=dtype),
            fl.GeLU(),
            fl.Conv2d(quarter, hidden, 2, stride=2, device=device, dtype=dtype),
            LayerNorm2d(hidden, eps=eps, device=device, dtype=dtype),
            fl.GeLU(),
            fl.Conv2d(hidden, config.embed_dim, 1, device=device, dtype=dtype),
        )


class NoMaskEmbedding(fl.Embedding):
    """The dense embedding without a mask prompt: one learned vector at every position."""

    def dense(self, batch: int, size: int) -> torch.Tensor:
        return self.weight.reshape(1, -1, 1, 1).expand(batch, -1, size, size)


# -- model ------------------------------------------------------------------------------------------


def box_corners(boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 4) boxes (x0, y0, x1, y1) → their corners as points (B, 2, 2) and labels (B, 2)."""
    corners = boxes.reshape(-1, 2, 2)
    labels = torch.tensor(BOX_CORNER_LABELS, device=boxes.device).expand(corners.shape[0], -1)
    return corners, labels


def padding_point(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One "not a point" per prompt, added when there is no box (the model was trained so)."""
    batch = points.shape[0]
    return points.new_zeros(batch, 1, 2), torch.full((batch, 1), NOT_A_POINT, device=points.device)


class PromptEncoder(fl.Chain):
    """Points, boxes and mask prompts → (sparse (B, N, C), dense (B, C, h, w)) embeddings.

    Example:
        >>> import torch
        >>> encoder = PromptEncoder(PromptEncoderConfig.tiny())
        >>> sparse, dense = encoder(torch.rand(2, 3, 2) * 96, torch.ones(2, 3), None, None)
        >>> sparse.shape, dense.shape  # a padding point is added when there is no box
        (torch.Size([2, 4, 32]), torch.Size([2, 32, 6, 6]))
    """

    def __init__(self, config: PromptEncoderConfig, device: Device = None, dtype: DType = None) -> None:
        self.config = config
        super().__init__(
            PointEncoder(config, device=device, dtype=dtype),
            MaskEncoder(config, device=device, dtype=dtype),
            NoMaskEmbedding(1, config.embed_dim, device=device, dtype=dtype),
        )

    @property
    def point_encoder(self) -> PointEncoder:
        return self.layer("PointEncoder", PointEncoder)

    def forward(  # pyright: ignore[reportIncompatibleMethodOverride]
        self,
        points: torch.Tensor | None,
        labels: torch.Tensor | None,
        boxes: torch.Tensor | None,
        masks: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        batch = next((t.shape[0] for t in (points, boxes, masks) if t is not None), 1)
        sparse = self.sparse(points, labels, boxes, batch)
        if masks is not None:
            return sparse, self.layer("MaskEncoder", MaskEncoder)(masks)
        return sparse, self.layer("NoMaskEmbedding", NoMaskEmbedding).dense(batch, self.config.embedding_size)

    def sparse(
        self, points: torch.Tensor | None, labels: torch.Tensor | None, boxes: torch.Tensor | None, batch: int
    ) -> torch.Tensor:
        """Points (padded when there is no box) then box corners, encoded: (B, N, C)."""
        coordinates: list[torch.Tensor] = []
        kinds: list[torch.Tensor] = []
        if points is not None:
            if labels is None:
                raise ValueError("point prompts need their labels")
            coordinates.append(points)
            kinds.append(labels)
            if boxes is None:
                extra_points, extra_labels = padding_point(points)
                coordinates.append(extra_points)
                kinds.append(extra_labels)
        if boxes is not None:
            corners, corner_labels = box_corners(boxes)
            coordinates.append(corners)
            kinds.append(corner_labels)
        if not coordinates:
            weight = self.point_encoder.fourier_features.weight
            return weight.new_empty(batch, 0, self.config.embed_dim)
        dtype = self.point_encoder.fourier_features.weight.dtype
        return self.point_encoder(torch.cat(coordinates, dim=1).to(dtype), torch.cat(kinds, dim=1))

    def dense_positional_encoding(self) -> torch.Tensor:
        """The positional encoding of every position of the image embedding: (1, C, h, w)."""
        size = self.config.embedding_size
        fourier = self.point_encoder.fourier_features
        centres = (torch.arange(size, device=fourier.weight.device, dtype=fourier.weight.dtype) + 0.5) / size
        grid = torch.stack(torch.meshgrid(centres, centres, indexing="xy"), dim=-1)
        return fourier(grid).permute(2, 0, 1)[None]


__all__ = [
    "BOX_CORNER_LABELS",
    "NOT_A_POINT",
    "FourierFeatures",
    "LabelEmbedding",
    "MaskEncoder",
    "NoMaskEmbedding",
    "PixelCenters",
    "PointEncoder",
    "PromptEncoder",
    "PromptEncoderConfig",
    "box_corners",
    "padding_point",
]

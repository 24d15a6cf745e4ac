"""Bilinear resizing of 8-bit images exactly as Pillow does it, in torch.

Segment Anything's reference predictor resizes its input with Pillow (`Image.resize(size, BILINEAR)`,
through torchvision). torch's own antialiased bilinear interpolation differs from it by one grey level
on about 1% of pixels, which changes the masks, so this reproduces Pillow's algorithm
(`libImaging/Resample.c`): a triangle filter widened by the downscaling factor, coefficients normalised
per output pixel and rounded to 22-bit fixed point, a horizontal pass then a vertical pass, each rounded
and clipped to 8 bits.
"""

from __future__ import annotations

import math

import numpy as np
import torch

PRECISION_BITS = 32 - 8 - 2  # Pillow's fixed-point precision for 8-bit images
BILINEAR_SUPPORT = 1.0


def _triangle(x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    return np.where(x < 1.0, 1.0 - x, 0.0)


def fixed_point_coefficients(in_size: int, out_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pillow's bilinear coefficients from `in_size` to `out_size` samples.

    Returns:
        (first input index (out,), coefficients (out, taps) as 22-bit fixed-point integers); taps past
        an output's window are 0.
    """
    scale = in_size / out_size
    filter_scale = max(scale, 1.0)
    support = BILINEAR_SUPPORT * filter_scale
    taps = math.ceil(support) * 2 + 1
    centre = (np.arange(out_size) + 0.5) * scale
    first = np.maximum((centre - support + 0.5).astype(np.int64), 0)  # C casts truncate toward zero
    last = np.minimum((centre + support + 0.5).astype(np.int64), in_size)
    offsets = np.arange(taps)
    inside = offsets[None, :] < (last - first)[:, None]
    reciprocal = 1.0 / filter_scale  # Pillow multiplies by it (rounding differs from dividing)
    positions = (offsets[None, :] + first[:, None] - centre[:, None] + 0.5) * reciprocal
    weights = np.where(inside, _triangle(positions), 0.0)
    total = np.zeros(out_size)
    for tap in range(taps):  # summed in order, as Pillow does, so the rounding is the same
        total += weights[:, tap]
    normalised = np.where(
        total[:, None] != 0.0, weights / np.where(total == 0.0, 1.0, total)[:, None], weights
    )
    scaled = normalised * (1 << PRECISION_BITS)
    fixed = np.where(scaled < 0, scaled - 0.5, scaled + 0.5).astype(np.int64)
    return torch.from_numpy(first), torch.from_numpy(fixed)


def _resample(image: torch.Tensor, out_size: int, dim: int) -> torch.Tensor:
    """One pass along `dim` of an int64 (H, W, C) image; rounded and clipped to 0…255."""
    in_size = image.shape[dim]
    first, coefficients = fixed_point_coefficients(in_size, out_size)
    accumulated = torch.full((), 1 << (PRECISION_BITS - 1), dtype=torch.int64)
    for tap in range(coefficients.shape[1]):
        index = (first + tap).clamp(max=in_size - 1)
        weight = coefficients[:, tap]
        if dim == 1:
            accumulated = accumulated + image[:, index] * weight[None, :, None]
        else:
            accumulated = accumulated + image[index] * weight[:, None, None]
    return (accumulated >> PRECISION_BITS).clamp(0, 255)


def resize_like_pillow(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """An 8-bit (H, W, C) image resized to (height, width) as Pillow's bilinear `resize` does.

    Example:
        >>> import torch
        >>> resize_like_pillow(torch.zeros(30, 40, 3, dtype=torch.uint8), 15, 20).shape
        torch.Size([15, 20, 3])
    """
    if image.dtype != torch.uint8 or image.dim() != 3:
        raise ValueError(f"expected an (H, W, C) uint8 image, got {tuple(image.shape)} {image.dtype}")
    pixels = image.to(device="cpu", dtype=torch.int64)
    if width != pixels.shape[1]:
        pixels = _resample(pixels, width, dim=1)
    if height != pixels.shape[0]:
        pixels = _resample(pixels, height, dim=0)
    return pixels.to(torch.uint8)


__all__ = ["fixed_point_coefficients", "resize_like_pillow"]

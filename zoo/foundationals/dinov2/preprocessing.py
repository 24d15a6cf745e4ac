"""DINOv2's image preprocessing, in plain torch, as transformers' `BitImageProcessor` does it with the
settings of the `facebook/dinov2-*` repositories: shortest edge to 256 pixels (bicubic, antialiased),
a centred 224 × 224 crop, ImageNet mean and standard deviation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

MAX_PIXEL = 255.0


@dataclass(frozen=True)
class PreprocessingConfig:
    """How images are prepared (defaults: the `facebook/dinov2-*` processor settings).

    Attributes:
        shortest_edge: The shorter side after resizing (the longer keeps the aspect ratio, truncated).
        crop_size: Side of the centred square crop.
        mean: Per-channel mean, in [0, 1] units.
        std: Per-channel standard deviation, in [0, 1] units.
    """

    shortest_edge: int = 256
    crop_size: int = 224
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)


def _resized_size(height: int, width: int, shortest_edge: int) -> tuple[int, int]:
    if height <= width:
        return shortest_edge, int(shortest_edge * width / height)
    return int(shortest_edge * height / width), shortest_edge


def _resize(pixels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic, antialiased; uint8 stays uint8 (natively on CPU, else rounded back as torchvision does)."""
    if tuple(pixels.shape[-2:]) == size:
        return pixels
    if pixels.device.type == "cpu":
        return F.interpolate(pixels, size=size, mode="bicubic", align_corners=False, antialias=True)
    resized = F.interpolate(pixels.float(), size=size, mode="bicubic", align_corners=False, antialias=True)
    return resized.clamp_(0, MAX_PIXEL).round_().to(torch.uint8)


def _center_crop(pixels: torch.Tensor, side: int) -> torch.Tensor:
    height, width = pixels.shape[-2:]
    if side > height or side > width:
        raise ValueError(f"a {side}-pixel crop does not fit in {height} × {width}")
    top, left = int((height - side) / 2.0), int((width - side) / 2.0)
    return pixels[..., top : top + side, left : left + side]


def _normalize(pixels: torch.Tensor, config: PreprocessingConfig) -> torch.Tensor:
    # Mean and std scaled to pixel units once, then one subtraction and one division, in float32.
    mean = torch.tensor(config.mean, device=pixels.device) * MAX_PIXEL
    std = torch.tensor(config.std, device=pixels.device) * MAX_PIXEL
    return (pixels.to(torch.float32) - mean[:, None, None]) / std[:, None, None]


def preprocess(image: torch.Tensor, config: PreprocessingConfig | None = None) -> torch.Tensor:
    """An RGB image → the model's (1, 3, crop, crop) float32 input.

    Args:
        image: (H, W, 3) uint8, as `torch.from_numpy(numpy.asarray(pil_image.convert("RGB")))` gives.
        config: The processor settings; by default the released models'.

    Example:
        >>> preprocess(torch.zeros(300, 400, 3, dtype=torch.uint8)).shape
        torch.Size([1, 3, 224, 224])
    """
    config = config or PreprocessingConfig()
    if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[-1] != len(config.mean):
        raise ValueError(
            f"expected an (H, W, {len(config.mean)}) uint8 image, got {tuple(image.shape)} {image.dtype}"
        )
    pixels = image.permute(2, 0, 1)[None]
    pixels = _resize(pixels, _resized_size(image.shape[0], image.shape[1], config.shortest_edge))
    return _normalize(_center_crop(pixels, config.crop_size), config)


__all__ = ["PreprocessingConfig", "preprocess"]

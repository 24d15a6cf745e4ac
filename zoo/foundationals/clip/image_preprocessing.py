"""Images → the pixels a CLIP image encoder reads: resize, center crop, normalise, in plain torch.

It reproduces transformers' `CLIPImageProcessor` (5.x, the torchvision backend diffusers' IP-Adapter
pipelines use) step for step, so the same uint8 image gives the same pixel values:

1. resize so the shortest edge is `shortest_edge` (the other is `int(shortest_edge * long / short)`),
   bicubic with antialiasing; uint8 images are resized by torch's own uint8 kernel on the CPU, any other
   input in float32 (uint8 images elsewhere are then clamped, rounded and cast back, as torchvision does);
2. center crop to `crop_size` (zero padding first when the image is smaller);
3. rescale by 1/255 and normalise by CLIP's mean and std, fused into one subtraction and one division.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
UINT8_MAX = 255
RGB = 3


@dataclass(frozen=True)
class CLIPImagePreprocessor:
    """CLIP's image preprocessing (defaults: `CLIPImageProcessor()`'s, for 224×224 encoders).

    Attributes:
        shortest_edge: Length of the shortest edge after resizing.
        crop_size: Side of the square center crop.
        mean: Per-channel mean of the [0, 1] pixels, subtracted.
        std: Per-channel standard deviation, divided by.
        rescale_factor: Multiplies the pixels first (1/255: uint8 values to [0, 1]).

    Example:
        >>> import torch
        >>> image = torch.randint(0, 256, (3, 240, 320), dtype=torch.uint8)
        >>> CLIPImagePreprocessor()(image).shape
        torch.Size([1, 3, 224, 224])
    """

    shortest_edge: int = 224
    crop_size: int = 224
    mean: tuple[float, float, float] = OPENAI_CLIP_MEAN
    std: tuple[float, float, float] = OPENAI_CLIP_STD
    rescale_factor: float = 1 / UINT8_MAX

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """(3, H, W) or (B, 3, H, W) RGB images (uint8, or floats in [0, 255]) → (B, 3, crop, crop) float32."""
        batch = _as_batch(images)
        return self.normalize(self.center_crop(self.resize(batch)))

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) after resizing: the shortest edge becomes `shortest_edge`."""
        short, long = sorted((height, width))
        new_long = int(self.shortest_edge * long / short)
        return (self.shortest_edge, new_long) if height <= width else (new_long, self.shortest_edge)

    def resize(self, images: torch.Tensor) -> torch.Tensor:
        """Bicubic, antialiased resize of a (B, 3, H, W) batch, keeping its dtype."""
        size = self.output_size(*images.shape[-2:])
        if size == tuple(images.shape[-2:]):
            return images
        native = images.dtype in (torch.float32, torch.float64) or (
            images.dtype == torch.uint8 and images.device.type == "cpu"
        )
        if native:
            return F.interpolate(images, size=size, mode="bicubic", align_corners=False, antialias=True)
        resized = F.interpolate(
            images.float(), size=size, mode="bicubic", align_corners=False, antialias=True
        )
        if images.dtype == torch.uint8:
            resized = resized.clamp(0, UINT8_MAX)
        if not images.is_floating_point():
            resized = resized.round()
        return resized.to(images.dtype)

    def center_crop(self, images: torch.Tensor) -> torch.Tensor:
        """The centered `crop_size` square of a (B, 3, H, W) batch (zero-padded first if smaller)."""
        images = self._pad_to_crop(images)
        height, width = images.shape[-2:]
        top = int((height - self.crop_size) / 2.0)
        left = int((width - self.crop_size) / 2.0)
        return images[..., top : top + self.crop_size, left : left + self.crop_size]

    def _pad_to_crop(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        if height >= self.crop_size and width >= self.crop_size:
            return images
        pad_w, pad_h = max(self.crop_size - width, 0), max(self.crop_size - height, 0)
        return F.pad(images, (pad_w // 2, (pad_w + 1) // 2, pad_h // 2, (pad_h + 1) // 2))

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Rescale and normalise in one step, as transformers fuses them: (x - mean/r) / (std/r)."""
        mean = torch.tensor(self.mean, device=images.device) * (1.0 / self.rescale_factor)
        std = torch.tensor(self.std, device=images.device) * (1.0 / self.rescale_factor)
        return (images.to(torch.float32) - mean[:, None, None]) / std[:, None, None]


def _as_batch(images: torch.Tensor) -> torch.Tensor:
    batch = images.unsqueeze(0) if images.dim() == RGB else images
    if batch.dim() != RGB + 1 or batch.shape[1] != RGB:
        raise ValueError(
            f"expected RGB images shaped (3, H, W) or (B, 3, H, W), got {tuple(images.shape)}: "
            "convert other layouts (H, W, 3 from PIL or numpy: permute(2, 0, 1)) first"
        )
    return batch


__all__ = ["OPENAI_CLIP_MEAN", "OPENAI_CLIP_STD", "CLIPImagePreprocessor"]

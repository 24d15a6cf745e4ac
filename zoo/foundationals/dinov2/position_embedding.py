"""DINOv2's learned position embeddings, resized to the patch grid of the image at hand.

The embeddings cover the class token and a square grid of M × M patches (37 × 37: the 518-pixel
training size of the released models). For any other image the grid is resized with bicubic
interpolation, and the reference implementations resize it differently:

| reference                                                  | resized by                | antialias |
|------------------------------------------------------------|---------------------------|-----------|
| original code, models without registers (`dinov2_vits14`)  | scale factor (h + 0.1) / M | no        |
| original code, models with registers (`dinov2_vits14_reg`) | target size (h, w)        | yes       |
| transformers `Dinov2Model`                                 | target size (h, w)        | no        |
| transformers `Dinov2WithRegistersModel`, timm              | target size (h, w)        | yes       |

`interpolate_offset` (0: resize to the target size) and `interpolate_antialias` choose among them;
they are the original code's own parameters. Every reference returns the stored embeddings untouched
when the image is square and its grid is the stored one, and interpolates in float32.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

import zoo.fluxion as fl
from zoo.fluxion.layers.weighted import Device, DType

IMAGE_KEY = "image"  # the context entry holding the model's input image, read for its pixel size


def resize_grid(
    grid: torch.Tensor, size: tuple[int, int], offset: float = 0.0, antialias: bool = False
) -> torch.Tensor:
    """Bicubic resize of a (1, D, M, M) float32 grid to (1, D, h, w).

    Args:
        grid: The stored embeddings as a square grid.
        size: The target grid (rows, columns).
        offset: 0 resizes to `size`; otherwise the scale factor is (size + offset) / M, as the original
            code computes it for its models without registers (0.1).
        antialias: Low-pass filter when shrinking (the original code with registers, transformers'
            `Dinov2WithRegistersModel`, timm).

    Example:
        >>> resize_grid(torch.zeros(1, 4, 3, 3), (5, 2), offset=0.1).shape
        torch.Size([1, 4, 5, 2])
    """
    if not offset:
        return F.interpolate(grid, size=size, mode="bicubic", align_corners=False, antialias=antialias)
    side = grid.shape[-1]
    scale = ((size[0] + offset) / side, (size[1] + offset) / side)
    resized = F.interpolate(
        grid, scale_factor=scale, mode="bicubic", align_corners=False, antialias=antialias
    )
    if tuple(resized.shape[-2:]) != size:
        raise ValueError(
            f"interpolate_offset {offset} resizes the grid to {tuple(resized.shape[-2:])}, not {size}"
        )
    return resized


class PositionEmbedding(fl.WeightedModule):
    """Adds the position embeddings to (B, 1 + h·w, D) class and patch tokens, resized to h × w.

    The patch grid follows from the input image, which the model stores in its context (`context`,
    key `image`) before the patch embedding.
    """

    def __init__(
        self,
        grid_side: int,
        hidden_size: int,
        patch_size: int,
        context: str,
        interpolate_offset: float = 0.0,
        interpolate_antialias: bool = False,
        device: Device = None,
        dtype: DType = None,
    ) -> None:
        super().__init__()
        self.grid_side, self.patch_size, self.context = grid_side, patch_size, context
        self.interpolate_offset, self.interpolate_antialias = interpolate_offset, interpolate_antialias
        self.weight = nn.Parameter(torch.zeros(1, 1 + grid_side**2, hidden_size, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = self.use_context(self.context)[IMAGE_KEY].shape[-2:]
        return x + self.embeddings(height, width)

    def embeddings(self, height: int, width: int) -> torch.Tensor:
        """The (1, 1 + h·w, D) embeddings for an image of `height` × `width` pixels."""
        size = (height // self.patch_size, width // self.patch_size)
        if height == width and size[0] == self.grid_side:
            return self.weight
        dim = self.weight.shape[-1]
        # The same layout steps as the references (a channels-last view of the stored grid), so the
        # bicubic kernel sees the same memory layout and rounds the same way.
        grid = self.weight[:, 1:].reshape(1, self.grid_side, self.grid_side, dim).permute(0, 3, 1, 2)
        resized = resize_grid(
            grid.to(torch.float32), size, self.interpolate_offset, self.interpolate_antialias
        ).to(self.weight.dtype)
        return torch.cat((self.weight[:, :1], resized.permute(0, 2, 3, 1).reshape(1, -1, dim)), dim=1)

    def extra_repr(self) -> str:
        return (
            f"grid={self.grid_side}x{self.grid_side}, patch_size={self.patch_size}, "
            f"interpolate_offset={self.interpolate_offset}, interpolate_antialias={self.interpolate_antialias}"
        )


__all__ = ["IMAGE_KEY", "PositionEmbedding", "resize_grid"]

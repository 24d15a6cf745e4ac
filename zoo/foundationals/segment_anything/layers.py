"""Small layers Segment Anything needs that fluxion does not have: a channel-wise layer norm for
(B, C, H, W) maps, a transposed convolution, and a multi-layer perceptron with ReLUs between layers.

Upstream: https://github.com/facebookresearch/segment-anything (`modeling/common.py`'s `LayerNorm2d`,
`modeling/mask_decoder.py`'s `MLP`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

import zoo.fluxion as fl
from zoo.fluxion.layers.weighted import Device, DType


class LayerNorm2d(fl.LayerNorm):
    """Layer normalisation over the channels of a (B, C, H, W) map, at every pixel.

    Example:
        >>> import torch
        >>> LayerNorm2d(4)(torch.randn(1, 4, 3, 3)).shape
        torch.Size([1, 4, 3, 3])
    """

    def __init__(self, channels: int, eps: float = 1e-6, device: Device = None, dtype: DType = None) -> None:
        super().__init__(channels, eps=eps, device=device, dtype=dtype)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        channels_last = input.permute(0, 2, 3, 1)
        normalized = F.layer_norm(channels_last, self.normalized_shape, self.weight, self.bias, self.eps)
        return normalized.permute(0, 3, 1, 2)


class ConvTranspose2d(nn.ConvTranspose2d, fl.WeightedModule):
    """`torch.nn.ConvTranspose2d` as a chain leaf.

    Example:
        >>> import torch
        >>> ConvTranspose2d(4, 2, kernel_size=2, stride=2)(torch.randn(1, 4, 3, 3)).shape
        torch.Size([1, 2, 6, 6])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        device: Device = None,
        dtype: DType = None,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, device=device, dtype=dtype)


class MultiLayerPerceptron(fl.Chain):
    """Linear layers with a ReLU between each two: `depth` layers, in → hidden → ... → out.

    Example:
        >>> import torch
        >>> MultiLayerPerceptron(8, 16, 2, depth=3)(torch.randn(5, 8)).shape
        torch.Size([5, 2])
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        out_features: int,
        depth: int,
        device: Device = None,
        dtype: DType = None,
    ) -> None:
        if depth < 1:
            raise ValueError(f"a perceptron needs at least one layer, got depth {depth}")
        widths = [in_features] + [hidden_features] * (depth - 1) + [out_features]
        layers: list[nn.Module] = []
        for index in range(depth):
            layers.append(fl.Linear(widths[index], widths[index + 1], device=device, dtype=dtype))
            if index < depth - 1:
                layers.append(fl.ReLU())
        super().__init__(*layers)


__all__ = ["ConvTranspose2d", "LayerNorm2d", "MultiLayerPerceptron"]

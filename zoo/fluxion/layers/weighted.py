"""Layers that hold weights. Arguments follow torch's order, plus `device` and `dtype`.

torch leaves the `device` and `dtype` of its layers' constructors unannotated; the `reportUnknownMemberType`
ignores below are about those two, which our own signatures do type.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from zoo.fluxion.module import WeightedModule

Device = torch.device | str | None
DType = torch.dtype | None


class Linear(nn.Linear, WeightedModule):
    """`torch.nn.Linear` as a chain leaf.

    Example:
        >>> import torch, zoo.fluxion as fl
        >>> fl.Linear(4, 2)(torch.randn(3, 4)).shape
        torch.Size([3, 2])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        device: Device = None,
        dtype: DType = None,
    ) -> None:
        super().__init__(  # pyright: ignore[reportUnknownMemberType]
            in_features, out_features, bias=bias, device=device, dtype=dtype
        )


class Conv2d(nn.Conv2d, WeightedModule):
    """`torch.nn.Conv2d` as a chain leaf.

    Example:
        >>> import torch, zoo.fluxion as fl
        >>> fl.Conv2d(3, 8, 3, padding=1)(torch.randn(1, 3, 16, 16)).shape
        torch.Size([1, 8, 16, 16])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: Literal["zeros", "reflect", "replicate", "circular"] = "zeros",
        device: Device = None,
        dtype: DType = None,
    ) -> None:
        super().__init__(  # pyright: ignore[reportUnknownMemberType]
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=bias,
            padding_mode=padding_mode,
            device=device,
            dtype=dtype,
        )


class GroupNorm(nn.GroupNorm, WeightedModule):
    """`torch.nn.GroupNorm` (num_groups, num_channels) as a chain leaf.

    Example:
        >>> import torch, zoo.fluxion as fl
        >>> fl.GroupNorm(2, 8)(torch.randn(1, 8, 4, 4)).shape
        torch.Size([1, 8, 4, 4])
    """

    def __init__(
        self,
        num_groups: int,
        num_channels: int,
        eps: float = 1e-5,
        affine: bool = True,
        device: Device = None,
        dtype: DType = None,
    ) -> None:
        super().__init__(  # pyright: ignore[reportUnknownMemberType]
            num_groups, num_channels, eps=eps, affine=affine, device=device, dtype=dtype
        )


class LayerNorm(nn.LayerNorm, WeightedModule):
    """`torch.nn.LayerNorm` as a chain leaf.

    Example:
        >>> import torch, zoo.fluxion as fl
        >>> fl.LayerNorm(8)(torch.randn(2, 8)).shape
        torch.Size([2, 8])
    """

    def __init__(
        self,
        normalized_shape: int | list[int] | torch.Size,
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        device: Device = None,
        dtype: DType = None,
    ) -> None:
        super().__init__(  # pyright: ignore[reportUnknownMemberType]
            normalized_shape,
            eps=eps,
            elementwise_affine=elementwise_affine,
            bias=bias,
            device=device,
            dtype=dtype,
        )


class Embedding(nn.Embedding, WeightedModule):
    """`torch.nn.Embedding` as a chain leaf.

    Example:
        >>> import torch, zoo.fluxion as fl
        >>> fl.Embedding(10, 4)(torch.tensor([[1, 2]])).shape
        torch.Size([1, 2, 4])
    """

    def __init__(
        self, num_embeddings: int, embedding_dim: int, device: Device = None, dtype: DType = None
    ) -> None:
        super().__init__(  # pyright: ignore[reportUnknownMemberType]
            num_embeddings, embedding_dim, device=device, dtype=dtype
        )


class Parameter(WeightedModule):
    """A bare learned tensor (a positional embedding, a projection used by matmul), returned as is.

    Example:
        >>> import zoo.fluxion as fl
        >>> fl.Parameter(77, 8)().shape
        torch.Size([77, 8])
    """

    def __init__(self, *dims: int, device: Device = None, dtype: DType = None) -> None:
        super().__init__()
        self.dims = dims
        self.weight = nn.Parameter(torch.randn(*dims, device=device, dtype=dtype))

    def forward(self, *_args: object) -> torch.Tensor:
        return self.weight

    def extra_repr(self) -> str:
        return f"dims={self.dims}"


__all__ = ["Conv2d", "Embedding", "GroupNorm", "LayerNorm", "Linear", "Parameter"]

"""Parameterless helpers: identity, shapes, slicing, scaling, interpolation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.nn import functional as F

from zoo.fluxion.module import ContextModule


class Identity(ContextModule):
    """Returns its input.

    Example:
        >>> import torch, zoo.fluxion as fl
        >>> fl.Identity()(torch.ones(2)).tolist()
        [1.0, 1.0]
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class GetArg(ContextModule):
    """Returns its `index`-th input.

    Example:
        >>> import torch, zoo.fluxion as fl
        >>> fl.GetArg(1)(torch.zeros(1), torch.ones(1)).tolist()
        [1.0]
    """

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def forward(self, *args: Any) -> Any:
        return args[self.index]

    def extra_repr(self) -> str:
        return f"index={self.index}"


class Reshape(ContextModule):
    """Reshapes every dimension but the batch one: `Reshape(4, -1)` maps (B, 16) to (B, 4, 4).

    Example:
        >>> import torch, zoo.fluxion as fl
        >>> fl.Reshape(4, -1)(torch.zeros(2, 16)).shape
        torch.Size([2, 4, 4])
    """

    def __init__(self, *shape: int) -> None:
        super().__init__()
        self.shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)

    def extra_repr(self) -> str:
        return f"shape={self.shape}"


class Flatten(ContextModule):
    """`torch.flatten` between `start_dim` and `end_dim`.

    Example:
        >>> import torch, zoo.fluxion as fl
        >>> fl.Flatten(1)(torch.zeros(2, 3, 4)).shape
        torch.Size([2, 12])
    """

    def __init__(self, start_dim: int = 0, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Unflatten(ContextModule):
    """`torch.unflatten` of `dim` into `sizes`.

    Example:
        >>> import torch, zoo.fluxion as fl
        >>> fl.Unflatten(1, (3, 4))(torch.zeros(2, 12)).shape
        torch.Size([2, 3, 4])
    """

    def __init__(self, dim: int, sizes: tuple[int, ...]) -> None:
        super().__init__()
        self.dim, self.sizes = dim, sizes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.unflatten(x, self.dim, self.sizes)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, sizes={self.sizes}"


class Transpose(ContextModule):
    """Swaps two dimensions.

    Example:
        >>> import torch, zoo.fluxion as fl
        >>> fl.Transpose(1, 2)(torch.zeros(2, 3, 4)).shape
        torch.Size([2, 4, 3])
    """

    def __init__(self, dim0: int, dim1: int) -> None:
        super().__init__()
        self.dim0, self.dim1 = dim0, dim1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(self.dim0, self.dim1)

    def extra_repr(self) -> str:
        return f"dim0={self.dim0}, dim1={self.dim1}"


class Permute(ContextModule):
    """Reorders dimensions.

    Example:
        >>> import torch, zoo.fluxion as fl
        >>> fl.Permute(2, 0, 1)(torch.zeros(2, 3, 4)).shape
        torch.Size([4, 2, 3])
    """

    def __init__(self, *dims: int) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(*self.dims)

    def extra_repr(self) -> str:
        return f"dims={self.dims}"


class Slicing(ContextModule):
    """`x[..., start:end:step, ...]` along `dim`.

    Example:
        >>> import torch, zoo.fluxion as fl
        >>> fl.Slicing(dim=1, start=1)(torch.zeros(2, 3)).shape
        torch.Size([2, 2])
    """

    def __init__(self, dim: int = 0, start: int = 0, end: int | None = None, step: int = 1) -> None:
        super().__init__()
        self.dim, self.start, self.end, self.step = dim, start, end, step

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        index = [slice(None)] * x.dim()
        index[self.dim] = slice(self.start, self.end, self.step)
        return x[tuple(index)]

    def extra_repr(self) -> str:
        return f"dim={self.dim}, start={self.start}, end={self.end}, step={self.step}"


class Chunk(ContextModule):
    """Splits into `chunks` equal parts along `dim`; returns a tuple.

    Example:
        >>> import torch, zoo.fluxion as fl
        >>> [t.shape for t in fl.Chunk(2, dim=1)(torch.zeros(1, 4))]
        [torch.Size([1, 2]), torch.Size([1, 2])]
    """

    def __init__(self, chunks: int, dim: int = 0) -> None:
        super().__init__()
        self.chunks, self.dim = chunks, dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return x.chunk(self.chunks, dim=self.dim)

    def extra_repr(self) -> str:
        return f"chunks={self.chunks}, dim={self.dim}"


class Multiply(ContextModule):
    """Multiplies by a constant `scale`, adds a constant `bias`.

    Example:
        >>> import torch, zoo.fluxion as fl
        >>> fl.Multiply(2.0, bias=1.0)(torch.ones(1)).tolist()
        [3.0]
    """

    def __init__(self, scale: float = 1.0, bias: float = 0.0) -> None:
        super().__init__()
        self.scale, self.bias = scale, bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x + self.bias

    def extra_repr(self) -> str:
        return f"scale={self.scale}, bias={self.bias}"


class Interpolate(ContextModule):
    """Resizes a (B, C, H, W) tensor by `scale_factor` with `mode` (nearest by default).

    Example:
        >>> import torch, zoo.fluxion as fl
        >>> fl.Interpolate(2.0)(torch.zeros(1, 1, 2, 2)).shape
        torch.Size([1, 1, 4, 4])
    """

    def __init__(self, scale_factor: float = 2.0, mode: str = "nearest") -> None:
        super().__init__()
        self.scale_factor, self.mode = scale_factor, mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.scale_factor, mode=self.mode)

    def extra_repr(self) -> str:
        return f"scale_factor={self.scale_factor}, mode={self.mode!r}"


class Pad(ContextModule):
    """`torch.nn.functional.pad` with a fixed padding.

    Example:
        >>> import torch, zoo.fluxion as fl
        >>> fl.Pad((0, 1, 0, 1))(torch.zeros(1, 1, 2, 2)).shape
        torch.Size([1, 1, 3, 3])
    """

    def __init__(self, padding: tuple[int, ...], mode: str = "constant", value: float = 0.0) -> None:
        super().__init__()
        self.padding, self.mode, self.value = padding, mode, value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "constant":
            return F.pad(x, self.padding, mode="constant", value=self.value)
        return F.pad(x, self.padding, mode=self.mode)

    def extra_repr(self) -> str:
        return f"padding={self.padding}, mode={self.mode!r}"


class Lambda(ContextModule):
    """Wraps a function as a layer.

    Example:
        >>> import torch, zoo.fluxion as fl
        >>> fl.Chain(fl.Lambda(torch.neg))(torch.ones(2)).tolist()
        [-1.0, -1.0]
    """

    def __init__(self, func: Callable[..., Any]) -> None:
        super().__init__()
        self.func = func

    def forward(self, *args: Any) -> Any:
        return self.func(*args)

    def extra_repr(self) -> str:
        return getattr(self.func, "__qualname__", repr(self.func))


__all__ = [
    "Chunk",
    "Flatten",
    "GetArg",
    "Identity",
    "Interpolate",
    "Lambda",
    "Multiply",
    "Pad",
    "Permute",
    "Reshape",
    "Slicing",
    "Transpose",
    "Unflatten",
]

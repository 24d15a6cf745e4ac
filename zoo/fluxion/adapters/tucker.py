"""A LoRA for a convolution with a Tucker core (LyCORIS LoCon's `lora_mid`).

`down` and `up` are 1×1 convolutions to and from `rank` channels; the core in between has the target's
kernel, stride and padding. Its weight change is `up ×₁ core ×₂ down` (`Lora.delta_weight`).
"""

from __future__ import annotations

import torch

from zoo.fluxion.adapters.lora import Lora
from zoo.fluxion.errors import LoraWeightsError
from zoo.fluxion.layers.weighted import Conv2d, Device, DType


class TuckerConv2dLora(Lora):
    """LoRA for a `Conv2d` with a rank×rank core of the target's kernel between `down` and `up`.

    Example:
        >>> import torch, zoo.fluxion as fl
        >>> lora = fl.TuckerConv2dLora("style", 4, 8, rank=2, kernel_size=3, padding=1)
        >>> lora(torch.randn(1, 4, 6, 6)).shape
        torch.Size([1, 8, 6, 6])
    """

    def __init__(
        self,
        name: str,
        in_channels: int,
        out_channels: int,
        rank: int = 16,
        scale: float = 1.0,
        kernel_size: int | tuple[int, int] = 3,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        device: Device = None,
        dtype: DType = None,
    ) -> None:
        self.in_channels, self.out_channels = in_channels, out_channels
        on = {"bias": False, "device": device, "dtype": dtype}
        super().__init__(
            name,
            Conv2d(in_channels, rank, 1, **on),  # pyright: ignore[reportArgumentType]
            Conv2d(rank, out_channels, 1, **on),  # pyright: ignore[reportArgumentType]
            rank,
            scale,
            mid=Conv2d(rank, rank, kernel_size, stride, padding, **on),  # pyright: ignore[reportArgumentType]
        )

    @classmethod
    def from_weights(
        cls,
        name: str,
        down: torch.Tensor,
        mid: torch.Tensor,
        up: torch.Tensor,
        scale: float = 1.0,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
    ) -> TuckerConv2dLora:
        """A LoRA holding copies of `down` (rank, in, 1, 1), `mid` (rank, rank, kh, kw), `up` (out, rank, 1, 1).

        Example:
            >>> import torch, zoo.fluxion as fl
            >>> down, mid, up = torch.randn(2, 4, 1, 1), torch.randn(2, 2, 3, 3), torch.randn(8, 2, 1, 1)
            >>> fl.TuckerConv2dLora.from_weights("style", down, mid, up, padding=1).delta_weight().shape
            torch.Size([8, 4, 3, 3])
        """
        rank = _tucker_rank(name, down, mid, up)
        kernel = (mid.shape[2], mid.shape[3])
        lora = cls(
            name, down.shape[1], up.shape[0], rank, scale, kernel, stride, padding, down.device, down.dtype
        )
        mid_layer = lora.mid
        assert mid_layer is not None
        with torch.no_grad():
            mid_layer.weight.copy_(mid)
        lora.load_weights(down, up)
        return lora

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, in_channels={self.in_channels}, out_channels={self.out_channels}"


def _tucker_rank(name: str, down: torch.Tensor, mid: torch.Tensor, up: torch.Tensor) -> int:
    rank = mid.shape[0]
    pointwise = down.shape[2:] == (1, 1) and up.shape[2:] == (1, 1)
    if down.dim() != 4 or mid.dim() != 4 or up.dim() != 4 or not pointwise:
        raise LoraWeightsError(
            f"Tucker LoRA {name!r}: down {tuple(down.shape)}, mid {tuple(mid.shape)}, up {tuple(up.shape)}",
            hint="down is (rank, in, 1, 1), mid (rank, rank, kh, kw), up (out, rank, 1, 1)",
        )
    if not down.shape[0] == mid.shape[1] == up.shape[1] == rank:
        raise LoraWeightsError(
            f"Tucker LoRA {name!r}: ranks differ: down {down.shape[0]}, mid {tuple(mid.shape[:2])}, up {up.shape[1]}"
        )
    return rank


__all__ = ["TuckerConv2dLora"]

"""LoRA: low-rank additive updates of Linear and Conv2d layers.

A LoRA computes `scale * up(down(x))` with `down` of rank `rank` and `up` initialised to zero, so a
fresh LoRA changes nothing (a Tucker LoRA runs a `mid` convolution in between). `LoraAdapter` puts a
target layer and any number of named updates in a `Sum`: LoRAs, and the other `LayerDelta`s (LoHa,
LoKr, stored diffs, DoRA). LoRAs are built empty, like a target (`for_target`), or from tensors
(`from_weights`, `Lora.from_dict`).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from zoo.fluxion.adapters.adapter import Adapter
from zoo.fluxion.adapters.delta import LayerDelta
from zoo.fluxion.chain import Chain
from zoo.fluxion.combinators import Sum
from zoo.fluxion.errors import FluxionError, LoraNameError, LoraWeightsError
from zoo.fluxion.layers.basics import Multiply
from zoo.fluxion.layers.weighted import Conv2d, Device, DType, Linear
from zoo.fluxion.module import WeightedModule


class Lora(Chain, LayerDelta):
    """Base of LoRA chains: `down`, then `mid` (Tucker LoRAs only), then `up`, then a scale.

    Identified by `name`.
    """

    def __init__(
        self,
        name: str,
        down: WeightedModule,
        up: WeightedModule,
        rank: int,
        scale: float,
        mid: WeightedModule | None = None,
    ) -> None:
        self.name, self.rank = name, rank
        nn.init.zeros_(up.weight)
        super().__init__(down, *([] if mid is None else [mid]), up, Multiply(scale))

    @property
    def down(self) -> WeightedModule:
        """The projection to rank dimensions."""
        return self[0]  # pyright: ignore[reportReturnType]

    @property
    def mid(self) -> WeightedModule | None:
        """The core between `down` and `up` of a Tucker LoRA; None for a plain one."""
        return self[1] if len(self) == 4 else None  # pyright: ignore[reportReturnType]

    @property
    def up(self) -> WeightedModule:
        """The projection back, zero at initialisation."""
        return self[-2]  # pyright: ignore[reportReturnType]

    @property
    def scale(self) -> float:
        """Multiplier of the update, settable at runtime."""
        return self.ensure_find(Multiply).scale

    @scale.setter
    def scale(self, value: float) -> None:
        self.ensure_find(Multiply).scale = value

    def load_weights(self, down: torch.Tensor, up: torch.Tensor) -> None:
        """Copy `down` and `up` into this LoRA (cast to its dtype, moved to its device)."""
        for role, layer, tensor in (("down", self.down, down), ("up", self.up, up)):
            if tensor.shape != layer.weight.shape:
                raise LoraWeightsError(
                    f"LoRA {self.name!r}: {role} has shape {tuple(tensor.shape)}, "
                    f"this LoRA needs {tuple(layer.weight.shape)}",
                    hint="build the LoRA with from_weights to take its shapes from the tensors",
                )
        with torch.no_grad():
            self.down.weight.copy_(down)
            self.up.weight.copy_(up)

    @staticmethod
    def from_dict(
        name: str,
        state_dict: Mapping[str, torch.Tensor],
        scale: float = 1.0,
        down_key: str = "down.weight",
        up_key: str = "up.weight",
    ) -> dict[str, Lora]:
        """One LoRA per prefix of `state_dict`, keyed by that prefix (the path of the layer it is for).

        `<prefix>.down.weight` and `<prefix>.up.weight` make a `LinearLora` when they are 2-d and a
        `Conv2dLora` when they are 4-d (stride 1, padding `kernel // 2`: build strided ones with
        `Conv2dLora.from_weights`). Every key must belong to a complete pair.

        Example:
            >>> import torch, zoo.fluxion as fl
            >>> weights = {"Linear.down.weight": torch.randn(2, 8), "Linear.up.weight": torch.randn(4, 2)}
            >>> {path: lora.rank for path, lora in fl.Lora.from_dict("style", weights).items()}
            {'Linear': 2}
        """
        pairs = _pairs(state_dict, down_key, up_key)
        return {prefix: _from_pair(name, down, up, scale) for prefix, (down, up) in pairs.items()}

    def delta_weight(self) -> torch.Tensor:
        """The update this LoRA adds to its target's weight (`scale * up @ down`, through `mid` if any)."""
        down, up = self.down.weight, self.up.weight
        if self.mid is not None:
            core = self.mid.weight  # (rank, rank, kh, kw): contracted with up on its first index
            return self.scale * torch.einsum("ij...,oi,jn->on...", core, up.flatten(1), down.flatten(1))
        product = up.flatten(1) @ down.flatten(1)
        return self.scale * product.reshape(up.shape[0], *down.shape[1:])

    def extra_repr(self) -> str:
        return f"name={self.name!r}, rank={self.rank}"


class LinearLora(Lora):
    """LoRA for a `Linear`.

    Example:
        >>> import torch, zoo.fluxion as fl
        >>> lora = fl.LinearLora("style", 8, 4, rank=2)
        >>> bool((lora(torch.randn(1, 8)) == 0).all())
        True
    """

    def __init__(
        self,
        name: str,
        in_features: int,
        out_features: int,
        rank: int = 16,
        scale: float = 1.0,
        device: Device = None,
        dtype: DType = None,
    ) -> None:
        self.in_features, self.out_features = in_features, out_features
        super().__init__(
            name,
            Linear(in_features, rank, bias=False, device=device, dtype=dtype),
            Linear(rank, out_features, bias=False, device=device, dtype=dtype),
            rank,
            scale,
        )

    @classmethod
    def for_target(cls, name: str, target: Linear, rank: int = 16, scale: float = 1.0) -> LinearLora:
        """A LoRA shaped, placed and typed like `target`."""
        return cls(
            name,
            target.in_features,
            target.out_features,
            rank,
            scale,
            device=target.device,
            dtype=target.dtype,
        )

    @classmethod
    def from_weights(cls, name: str, down: torch.Tensor, up: torch.Tensor, scale: float = 1.0) -> LinearLora:
        """A LoRA holding copies of `down` (rank, in_features) and `up` (out_features, rank).

        It is placed and typed like `down`.

        Example:
            >>> import torch, zoo.fluxion as fl
            >>> lora = fl.LinearLora.from_weights("style", torch.randn(2, 8), torch.randn(4, 2))
            >>> lora.in_features, lora.rank, lora.out_features
            (8, 2, 4)
        """
        rank = _rank(name, down, up, dims=2)
        lora = cls(name, down.shape[1], up.shape[0], rank, scale, device=down.device, dtype=down.dtype)
        lora.load_weights(down, up)
        return lora

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, in_features={self.in_features}, out_features={self.out_features}"


class Conv2dLora(Lora):
    """LoRA for a `Conv2d`: `down` has the target's kernel, stride and padding; `up` is 1×1 by default.

    `kernel_size` is the down kernel, or a (down, up) pair.

    Example:
        >>> import torch, zoo.fluxion as fl
        >>> lora = fl.Conv2dLora("style", 4, 8, rank=2, kernel_size=3, padding=1)
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
        kernel_size: int | tuple[int, int] = 1,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        device: Device = None,
        dtype: DType = None,
    ) -> None:
        down_kernel, up_kernel = kernel_size if isinstance(kernel_size, tuple) else (kernel_size, 1)
        self.in_channels, self.out_channels = in_channels, out_channels
        super().__init__(
            name,
            Conv2d(in_channels, rank, down_kernel, stride, padding, bias=False, device=device, dtype=dtype),
            Conv2d(
                rank, out_channels, up_kernel, padding=up_kernel // 2, bias=False, device=device, dtype=dtype
            ),
            rank,
            scale,
        )

    @classmethod
    def for_target(cls, name: str, target: Conv2d, rank: int = 16, scale: float = 1.0) -> Conv2dLora:
        """A LoRA shaped, placed and typed like `target`."""
        return cls(
            name,
            target.in_channels,
            target.out_channels,
            rank,
            scale,
            kernel_size=target.kernel_size[0],
            stride=target.stride,  # pyright: ignore[reportArgumentType]
            padding=target.padding,  # pyright: ignore[reportArgumentType]
            device=target.device,
            dtype=target.dtype,
        )

    @classmethod
    def from_weights(
        cls,
        name: str,
        down: torch.Tensor,
        up: torch.Tensor,
        scale: float = 1.0,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str | None = None,
    ) -> Conv2dLora:
        """A LoRA holding copies of `down` (rank, in, k, k) and `up` (out, rank, k', k'), typed like `down`.

        `stride` and `padding` are the down convolution's and must be the target's (by default, stride 1
        and padding `k // 2`, which keep the size for odd kernels); tensors do not record them.

        Example:
            >>> import torch, zoo.fluxion as fl
            >>> lora = fl.Conv2dLora.from_weights("style", torch.randn(2, 4, 3, 3), torch.randn(8, 2, 1, 1))
            >>> lora(torch.randn(1, 4, 6, 6)).shape
            torch.Size([1, 8, 6, 6])
        """
        rank = _rank(name, down, up, dims=4)
        kernels = _square_kernel(name, "down", down), _square_kernel(name, "up", up)
        lora = cls(
            name,
            down.shape[1],
            up.shape[0],
            rank,
            scale,
            kernel_size=kernels,
            stride=stride,
            padding=kernels[0] // 2 if padding is None else padding,
            device=down.device,
            dtype=down.dtype,
        )
        lora.load_weights(down, up)
        return lora

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, in_channels={self.in_channels}, out_channels={self.out_channels}"


class LoraAdapter(Sum, Adapter[WeightedModule]):
    """The target layer plus one or more named LoRAs (any `LayerDelta`), summed.

    Example:
        >>> import torch, zoo.fluxion as fl
        >>> model = fl.Chain(fl.Linear(8, 4))
        >>> adapter = fl.LoraAdapter(model.Linear, fl.LinearLora("a", 8, 4, rank=2)).inject(model)
        >>> adapter.lora_names
        ['a']
    """

    def __init__(self, target: WeightedModule, *loras: LayerDelta) -> None:
        with self.setup_adapter(target):
            super().__init__(target, *loras)
        self._check_names()

    @property
    def loras(self) -> dict[str, LayerDelta]:
        """The LoRAs (and the other updates) by name."""
        return {lora.name: lora for lora in self.layers(LayerDelta, recurse=False)}

    @property
    def lora_names(self) -> list[str]:
        """Names of the LoRAs, in order."""
        return list(self.loras)

    @property
    def scale(self) -> float:
        """The scale of every LoRA here (an error when they differ: read `scales` then); settable.

        Example:
            >>> import zoo.fluxion as fl
            >>> model = fl.Chain(fl.Linear(8, 4))
            >>> adapter = fl.LoraAdapter(model.Linear, fl.LinearLora("a", 8, 4), fl.LinearLora("b", 8, 4))
            >>> adapter.scale = 0.5
            >>> adapter.scales
            {'a': 0.5, 'b': 0.5}
        """
        scales = set(self.scales.values())
        if not scales:
            raise FluxionError("this adapter holds no LoRA, so it has no scale", hint="add one with add_lora")
        if len(scales) > 1:
            raise FluxionError(
                f"the LoRAs of this adapter have different scales: {self.scales}",
                hint="read adapter.scales for the scale of each LoRA by name",
            )
        return scales.pop()

    @scale.setter
    def scale(self, value: float) -> None:
        for lora in self.loras.values():
            lora.scale = value

    @property
    def scales(self) -> dict[str, float]:
        """The scale of each LoRA, by name; setting a dict changes the LoRAs it names, and only them."""
        return {name: lora.scale for name, lora in self.loras.items()}

    @scales.setter
    def scales(self, values: Mapping[str, float]) -> None:
        loras = self.loras
        unknown = sorted(set(values) - set(loras))
        if unknown:
            raise LoraNameError(
                f"no LoRA named {', '.join(map(repr, unknown))} in this adapter",
                hint=f"its LoRAs are {self.lora_names}",
            )
        for name, value in values.items():
            loras[name].scale = value

    def add_lora(self, lora: LayerDelta) -> None:
        """Add a LoRA; its name must be new (the adapter is left unchanged otherwise)."""
        if lora.name in self.loras:
            raise ValueError(f"LoRA names must be unique within an adapter: {lora.name!r} is already here")
        self.append(lora)

    def remove_lora(self, name: str) -> LayerDelta:
        """Remove the LoRA called `name` and return it."""
        lora = self.loras.get(name)
        if lora is None:
            raise LoraNameError(f"no LoRA named {name!r} here", hint=f"its LoRAs are {self.lora_names}")
        self.remove(lora)
        return lora

    def _check_names(self) -> None:
        names = [lora.name for lora in self.layers(LayerDelta, recurse=False)]
        if len(set(names)) != len(names):
            raise ValueError(f"LoRA names must be unique within an adapter, got {names}")

    def fused_weight(self) -> torch.Tensor:
        """The target's weight with every LoRA's update added."""
        weight = self.target.weight
        return weight + sum(
            (lora.delta_weight().to(weight.dtype) for lora in self.loras.values()), torch.zeros_like(weight)
        )


def _rank(name: str, down: torch.Tensor, up: torch.Tensor, dims: int) -> int:
    """The rank of a (down, up) pair of `dims`-d weights, checked to agree."""
    if down.dim() != dims or up.dim() != dims:
        raise LoraWeightsError(
            f"LoRA {name!r}: down {tuple(down.shape)} and up {tuple(up.shape)} are not both {dims}-d",
            hint="a Linear LoRA takes (rank, in) and (out, rank) weights, "
            "a Conv2d LoRA (rank, in, k, k) and (out, rank, k, k)",
        )
    if down.shape[0] != up.shape[1]:
        raise LoraWeightsError(
            f"LoRA {name!r}: down has rank {down.shape[0]} (its first dimension), "
            f"up has rank {up.shape[1]} (its second)",
            hint="down is (rank, in, ...) and up is (out, rank, ...): were they swapped?",
        )
    return down.shape[0]


def _square_kernel(name: str, role: str, weight: torch.Tensor) -> int:
    height, width = weight.shape[-2:]
    if height != width:
        raise LoraWeightsError(
            f"LoRA {name!r}: the {role} kernel is {height}×{width}; Conv2dLora supports square kernels only"
        )
    return height


def _pairs(
    state_dict: Mapping[str, torch.Tensor], down_key: str, up_key: str
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """(down, up) by prefix; every key must end with `down_key` or `up_key` and have its other half."""
    halves: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state_dict.items():
        for role in (down_key, up_key):
            if key == role or key.endswith("." + role):
                halves.setdefault(key.removesuffix(role).removesuffix("."), {})[role] = tensor
                break
        else:
            raise LoraWeightsError(
                f"{key!r} is neither a LoRA down nor up weight",
                hint=f"keys must read `<layer path>.{down_key}` or `<layer path>.{up_key}` "
                "(other names: pass down_key and up_key)",
            )
    incomplete = sorted(prefix for prefix, pair in halves.items() if len(pair) != 2)
    if incomplete:
        raise LoraWeightsError(f"LoRA weights without their down or up half: {incomplete[:8]}")
    return {prefix: (pair[down_key], pair[up_key]) for prefix, pair in sorted(halves.items())}


def _from_pair(name: str, down: torch.Tensor, up: torch.Tensor, scale: float) -> Lora:
    if down.dim() == 4:
        return Conv2dLora.from_weights(name, down, up, scale)
    return LinearLora.from_weights(name, down, up, scale)


__all__ = ["Conv2dLora", "LinearLora", "Lora", "LoraAdapter"]

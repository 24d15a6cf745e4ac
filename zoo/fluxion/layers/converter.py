"""Moving inputs to where the next layer computes: its device and dtype."""

from __future__ import annotations

from typing import Any

import torch

from zoo.fluxion.errors import ConverterError
from zoo.fluxion.module import ContextModule, first_tensor


class Converter(ContextModule):
    """Moves its inputs to the device and dtype of the next layer that holds weights.

    That layer is the first one after the converter, in execution order, with a parameter or buffer:
    its later siblings first, then those of its parents. It is looked up at every forward, so the
    converter follows the model when parts of it move. Only floating-point tensors change dtype (token
    ids stay integers); inputs that are not tensors pass unchanged.

    Example:
        >>> import torch, zoo.fluxion as fl
        >>> model = fl.Chain(fl.Converter(), fl.SiLU(), fl.Linear(2, 2, dtype=torch.float64))
        >>> model(torch.ones(1, 2)).dtype
        torch.float64
    """

    def __init__(self, set_device: bool = True, set_dtype: bool = True) -> None:
        super().__init__()
        self.set_device, self.set_dtype = set_device, set_dtype

    def forward(self, *args: Any) -> Any:
        reference = self._next_weights()
        converted = tuple(self._convert(arg, reference) for arg in args)
        return converted[0] if len(converted) == 1 else converted

    def _convert(self, value: object, reference: torch.Tensor) -> object:
        if not isinstance(value, torch.Tensor):
            return value
        device = reference.device if self.set_device else None
        dtype = reference.dtype if self.set_dtype and value.is_floating_point() else None
        return value.to(device=device, dtype=dtype)

    def _next_weights(self) -> torch.Tensor:
        node: ContextModule = self
        while (parent := node.parent) is not None:
            later = parent.children_list[parent.index(node) + 1 :]
            found = next((tensor for tensor in map(first_tensor, later) if tensor is not None), None)
            if found is not None:
                return found
            node = parent
        raise ConverterError(
            "Converter: no layer after it holds weights, so there is no device or dtype to convert to",
            hint="place it before the layers whose device and dtype the inputs must follow",
        )

    def extra_repr(self) -> str:
        return f"set_device={self.set_device}, set_dtype={self.set_dtype}"


__all__ = ["Converter"]

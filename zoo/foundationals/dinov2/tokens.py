"""DINOv2's learned tokens: the class token, the register tokens, and the mask token of masked-image
pretraining. Each is one weight, placed among the patch tokens in the order of the references:
[class, registers, patches]."""

from __future__ import annotations

import torch
from torch import nn

import zoo.fluxion as fl
from zoo.fluxion.layers.weighted import Device, DType

MASK_KEY = "patch_mask"  # the context entry holding the (B, h·w) boolean mask, when there is one


class MaskToken(fl.WeightedModule):
    """Replaces the patch tokens that the context's `patch_mask` (B, h·w) selects by a learned token.

    Used by masked-image pretraining; without a mask (inference) it passes the tokens through.
    """

    def __init__(self, hidden_size: int, context: str, device: Device = None, dtype: DType = None) -> None:
        super().__init__()
        self.context = context
        self.weight = nn.Parameter(torch.zeros(1, hidden_size, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask: torch.Tensor | None = self.use_context(self.context).get(MASK_KEY)
        if mask is None:
            return x
        return torch.where(mask.unsqueeze(-1), self.weight.to(x.dtype).unsqueeze(0), x)


class ClassToken(fl.WeightedModule):
    """Prepends the learned class token to (B, N, D) tokens."""

    def __init__(self, hidden_size: int, device: Device = None, dtype: DType = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, 1, hidden_size, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.weight.expand(x.shape[0], -1, -1), x), dim=1)


class Registers(fl.WeightedModule):
    """Inserts the learned register tokens after the class token (they get no position embedding)."""

    def __init__(self, count: int, hidden_size: int, device: Device = None, dtype: DType = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, count, hidden_size, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((x[:, :1], self.weight.expand(x.shape[0], -1, -1), x[:, 1:]), dim=1)


__all__ = ["MASK_KEY", "ClassToken", "MaskToken", "Registers"]

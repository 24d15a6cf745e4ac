"""Window attention with a learned relative position bias, as fluxion layers.

A Swin block attends inside windows (`zoo.foundationals.swin.windows`):

    (B, H, W, C) ─► WindowPartition ─► WindowAttention ─► WindowMerge ─► (B, H, W, C)
                        │ stores the block's WindowPlan in the model's context
                        ▼
    WindowAttention: (q, k, v) projections, bias = position table[offsets] (+ shift mask), attention,
                     output projection; on (B, windows, window², C) tokens.

The partition stores its plan (map size, window, shift) in the context so that the bias and the merge
that follow use the same one; blocks run one after the other, so one context entry serves them all.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

import zoo.fluxion as fl
from zoo.fluxion.layers.weighted import Device, DType
from zoo.foundationals.swin.windows import WindowPlan, relative_position_index

PLAN_KEY = "windows"


class WindowPartition(fl.ContextModule):
    """(B, H, W, C) → (B, windows, window², C); stores the `WindowPlan` in `context` as `windows`."""

    def __init__(self, window_size: int, shift_size: int, context: str) -> None:
        super().__init__()
        self.window_size, self.shift_size, self.context = window_size, shift_size, context

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plan = WindowPlan.for_feature_map(x.shape[1], x.shape[2], self.window_size, self.shift_size)
        self.use_context(self.context)[PLAN_KEY] = plan
        return plan.partition(x)

    def extra_repr(self) -> str:
        return f"window_size={self.window_size}, shift_size={self.shift_size}, context={self.context!r}"


class WindowMerge(fl.ContextModule):
    """(B, windows, window², C) → (B, H, W, C), with the plan the partition stored in `context`."""

    def __init__(self, context: str) -> None:
        super().__init__()
        self.context = context

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        plan: WindowPlan = self.use_context(self.context)[PLAN_KEY]
        return plan.merge(windows)

    def extra_repr(self) -> str:
        return f"context={self.context!r}"


class RelativePositionBias(fl.WeightedModule):
    """(heads, window², window²): the learned bias of each head for each pair of tokens in a window.

    Its input (the windows) is ignored: the bias depends on positions only.

    `weight` holds one row per offset between two tokens ((2·window - 1)² rows, one column per head).
    """

    def __init__(self, num_heads: int, window_size: int, device: Device = None, dtype: DType = None) -> None:
        super().__init__()
        self.num_heads, self.window_size = num_heads, window_size
        rows = (2 * window_size - 1) ** 2
        self.weight = nn.Parameter(torch.zeros(rows, num_heads, device=device, dtype=dtype))

    def forward(self, *_args: object) -> torch.Tensor:
        index = relative_position_index(self.window_size, self.weight.device)
        bias = self.weight[index.flatten()].view(*index.shape, self.num_heads)
        return bias.permute(2, 0, 1)

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, window_size={self.window_size}"


class AddShiftMask(fl.ContextModule):
    """Adds the shift mask of the block's `WindowPlan` (read from `context`) to a (heads, N, N) bias.

    Shifted: (windows, heads, N, N), each window with its own mask; unshifted: the bias as it is.
    """

    def __init__(self, context: str) -> None:
        super().__init__()
        self.context = context

    def forward(self, bias: torch.Tensor) -> torch.Tensor:
        plan: WindowPlan = self.use_context(self.context)[PLAN_KEY]
        mask = plan.shift_mask(bias.device, bias.dtype)
        return bias if mask is None else bias + mask[:, None]

    def extra_repr(self) -> str:
        return f"context={self.context!r}"


class WindowAttentionBias(fl.Chain):
    """What is added to the attention scores: the relative position bias, and the shift mask."""

    def __init__(
        self, num_heads: int, window_size: int, context: str, device: Device = None, dtype: DType = None
    ) -> None:
        super().__init__(
            RelativePositionBias(num_heads, window_size, device=device, dtype=dtype), AddShiftMask(context)
        )


class WindowScaledDotProductAttention(fl.ContextModule):
    """Multi-head attention inside each window: (q, k, v) (B, windows, N, C) and a bias → (B, windows, N, C).

    Windows and heads are folded into one axis, (B, windows · heads, N, C / heads), so that the bias of
    each window and head, (windows or 1, heads, N, N), is one (1, windows · heads, N, N) mask for the
    whole batch: the 4-D layout fused attention kernels take, without a copy of the mask per image.
    """

    def __init__(self, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, windows, N, C) → (B, windows · heads, N, C / heads)."""
        return x.unflatten(-1, (self.num_heads, -1)).transpose(-3, -2).flatten(1, 2)

    def forward(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, bias: torch.Tensor
    ) -> torch.Tensor:
        windows, tokens = query.shape[1], query.shape[2]
        q, k, v = (self.split_heads(t) for t in (query, key, value))
        mask = bias.expand(windows, self.num_heads, tokens, tokens).flatten(0, 1)[None]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return out.unflatten(1, (windows, self.num_heads)).transpose(-3, -2).flatten(-2)

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}"


class WindowAttention(fl.Chain):
    """Self-attention of the tokens of each window, biased by their relative positions (and the shift mask).

    Reads the block's `WindowPlan` from `context`, where `WindowPartition` stored it.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int,
        context: str,
        qkv_bias: bool = True,
        device: Device = None,
        dtype: DType = None,
    ) -> None:
        super().__init__(
            fl.Parallel(fl.Identity(), fl.Identity(), fl.Identity(), fl.Identity()),
            fl.Distribute(
                fl.Linear(dim, dim, bias=qkv_bias, device=device, dtype=dtype),
                fl.Linear(dim, dim, bias=qkv_bias, device=device, dtype=dtype),
                fl.Linear(dim, dim, bias=qkv_bias, device=device, dtype=dtype),
                WindowAttentionBias(num_heads, window_size, context, device=device, dtype=dtype),
            ),
            WindowScaledDotProductAttention(num_heads),
            fl.Linear(dim, dim, device=device, dtype=dtype),
        )


__all__ = [
    "PLAN_KEY",
    "AddShiftMask",
    "RelativePositionBias",
    "WindowAttention",
    "WindowAttentionBias",
    "WindowMerge",
    "WindowPartition",
    "WindowScaledDotProductAttention",
]

"""Multi-head attention as chains."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from zoo.fluxion.chain import Chain
from zoo.fluxion.combinators import Distribute, Parallel
from zoo.fluxion.layers.basics import Identity
from zoo.fluxion.layers.weighted import Device, DType, Linear
from zoo.fluxion.module import ContextModule


class ScaledDotProductAttention(ContextModule):
    """Splits (B, L, C) queries, keys and values into `num_heads` heads and attends.

    Example:
        >>> import torch, zoo.fluxion as fl
        >>> q = k = v = torch.randn(1, 5, 8)
        >>> fl.ScaledDotProductAttention(num_heads=2)(q, k, v).shape
        torch.Size([1, 5, 8])
    """

    def __init__(self, num_heads: int = 1, is_causal: bool = False) -> None:
        super().__init__()
        self.num_heads, self.is_causal = num_heads, is_causal

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, channels = x.shape
        return x.view(batch, length, self.num_heads, channels // self.num_heads).transpose(1, 2)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        q, k, v = (self.split_heads(t) for t in (query, key, value))
        out = F.scaled_dot_product_attention(q, k, v, is_causal=self.is_causal)
        return out.transpose(1, 2).flatten(2)

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, is_causal={self.is_causal}"


class Attention(Chain):
    """Projects (query, key, value) inputs, attends, and projects the result back.

    Example:
        >>> import torch, zoo.fluxion as fl
        >>> x, context = torch.randn(1, 5, 8), torch.randn(1, 3, 6)
        >>> fl.Attention(8, num_heads=2, key_embedding_dim=6, value_embedding_dim=6)(x, context, context).shape
        torch.Size([1, 5, 8])
    """

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int = 1,
        key_embedding_dim: int | None = None,
        value_embedding_dim: int | None = None,
        inner_dim: int | None = None,
        use_bias: bool = True,
        out_bias: bool = True,
        is_causal: bool = False,
        device: Device = None,
        dtype: DType = None,
    ) -> None:
        inner = inner_dim or embedding_dim
        self.embedding_dim, self.num_heads, self.inner_dim = embedding_dim, num_heads, inner
        key_dim, value_dim = key_embedding_dim or embedding_dim, value_embedding_dim or embedding_dim
        super().__init__(
            Distribute(
                Linear(embedding_dim, inner, bias=use_bias, device=device, dtype=dtype),
                Linear(key_dim, inner, bias=use_bias, device=device, dtype=dtype),
                Linear(value_dim, inner, bias=use_bias, device=device, dtype=dtype),
            ),
            ScaledDotProductAttention(num_heads=num_heads, is_causal=is_causal),
            Linear(inner, embedding_dim, bias=out_bias, device=device, dtype=dtype),
        )


class SelfAttention(Attention):
    """Attention of a (B, L, C) sequence to itself.

    Example:
        >>> import torch, zoo.fluxion as fl
        >>> fl.SelfAttention(8, num_heads=2)(torch.randn(1, 5, 8)).shape
        torch.Size([1, 5, 8])
    """

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int = 1,
        inner_dim: int | None = None,
        use_bias: bool = True,
        is_causal: bool = False,
        device: Device = None,
        dtype: DType = None,
    ) -> None:
        super().__init__(
            embedding_dim,
            num_heads=num_heads,
            inner_dim=inner_dim,
            use_bias=use_bias,
            is_causal=is_causal,
            device=device,
            dtype=dtype,
        )
        self.insert(0, Parallel(Identity(), Identity(), Identity()))


__all__ = ["Attention", "ScaledDotProductAttention", "SelfAttention"]

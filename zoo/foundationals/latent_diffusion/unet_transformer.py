"""The UNet's spatial transformers: transformer layers over a feature map's pixels, conditioned on the
text embedding of the `"unet"` context (self-attention, cross-attention, GEGLU feed-forward).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

import zoo.fluxion as fl
from zoo.fluxion.layers.weighted import Device, DType
from zoo.foundationals.latent_diffusion.unet_context import CONTEXT

if TYPE_CHECKING:
    from zoo.foundationals.latent_diffusion.unet import UNetConfig


class ImageToTokens(fl.ContextModule):
    """(B, C, H, W) → (B, H·W, C); remembers (H, W) in the context for `TokensToImage`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        self.use_context(CONTEXT)["image_size"] = (height, width)
        return x.permute(0, 2, 3, 1).reshape(batch, height * width, channels)


class TokensToImage(fl.ContextModule):
    """(B, H·W, C) → (B, C, H, W), with the (H, W) that `ImageToTokens` saw last."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = self.use_context(CONTEXT)["image_size"]
        return x.reshape(x.shape[0], height, width, x.shape[2]).permute(0, 3, 1, 2).contiguous()


class CrossAttention(fl.Attention):
    """Attention of (B, L, C) tokens to the context's text embedding (bias-free q, k, v projections)."""

    def __init__(
        self, channels: int, text_dim: int, num_heads: int, device: Device = None, dtype: DType = None
    ) -> None:
        super().__init__(
            channels,
            num_heads=num_heads,
            key_embedding_dim=text_dim,
            value_embedding_dim=text_dim,
            use_bias=False,
            device=device,
            dtype=dtype,
        )
        text = CONTEXT, "clip_text_embedding"
        self.insert(0, fl.Parallel(fl.Identity(), fl.UseContext(*text), fl.UseContext(*text)))


class SelfAttentionBlock(fl.Residual):
    """Layer norm, then multi-head self-attention, added back."""

    def __init__(
        self, channels: int, config: UNetConfig, num_heads: int, device: Device, dtype: DType
    ) -> None:
        super().__init__(
            fl.LayerNorm(channels, eps=config.layer_norm_eps, device=device, dtype=dtype),
            fl.SelfAttention(channels, num_heads=num_heads, use_bias=False, device=device, dtype=dtype),
        )


class CrossAttentionBlock(fl.Residual):
    """Layer norm, then cross-attention to the text embedding, added back."""

    def __init__(
        self, channels: int, config: UNetConfig, num_heads: int, device: Device, dtype: DType
    ) -> None:
        super().__init__(
            fl.LayerNorm(channels, eps=config.layer_norm_eps, device=device, dtype=dtype),
            CrossAttention(channels, config.cross_attention_dim, num_heads, device, dtype),
        )


class FeedForwardBlock(fl.Residual):
    """Layer norm, then a GEGLU feed-forward, added back."""

    def __init__(self, channels: int, config: UNetConfig, device: Device, dtype: DType) -> None:
        hidden = channels * config.feedforward_multiplier
        super().__init__(
            fl.LayerNorm(channels, eps=config.layer_norm_eps, device=device, dtype=dtype),
            fl.Linear(channels, 2 * hidden, device=device, dtype=dtype),
            fl.GLU(fl.GeLU()),
            fl.Linear(hidden, channels, device=device, dtype=dtype),
        )


class TransformerLayer(fl.Chain):
    """Self-attention, cross-attention to the text, feed-forward: each pre-normalised and residual."""

    def __init__(
        self, channels: int, config: UNetConfig, num_heads: int, device: Device = None, dtype: DType = None
    ) -> None:
        super().__init__(
            SelfAttentionBlock(channels, config, num_heads, device, dtype),
            CrossAttentionBlock(channels, config, num_heads, device, dtype),
            FeedForwardBlock(channels, config, device, dtype),
        )


class SpatialTransformer(fl.Residual):
    """Transformer layers over the pixels of a feature map, conditioned on the text, added back.

    Group norm, projection in, tokens, layers, projection out, image; the projections are Linear layers
    on tokens or 1×1 convolutions on the image (`use_linear_projection`).
    """

    def __init__(
        self,
        channels: int,
        depth: int,
        num_heads: int,
        config: UNetConfig,
        device: Device = None,
        dtype: DType = None,
    ) -> None:
        def projection() -> torch.nn.Module:
            if config.use_linear_projection:
                return fl.Linear(channels, channels, device=device, dtype=dtype)
            return fl.Conv2d(channels, channels, 1, device=device, dtype=dtype)

        layers = [TransformerLayer(channels, config, num_heads, device, dtype) for _ in range(depth)]
        if config.use_linear_projection:
            inside = [ImageToTokens(), projection(), *layers, projection(), TokensToImage()]
        else:
            inside = [projection(), ImageToTokens(), *layers, TokensToImage(), projection()]
        norm = fl.GroupNorm(
            config.norm_groups, channels, eps=config.transformer_norm_eps, device=device, dtype=dtype
        )
        super().__init__(norm, *inside)


__all__ = [
    "CrossAttention",
    "CrossAttentionBlock",
    "FeedForwardBlock",
    "ImageToTokens",
    "SelfAttentionBlock",
    "SpatialTransformer",
    "TokensToImage",
    "TransformerLayer",
]

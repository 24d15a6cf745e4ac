"""IP-Adapter image projections: a CLIP image feature → image tokens for the UNet's cross-attentions.

Paper: Ye et al., "IP-Adapter: Text Compatible Image Prompt Adapter for Text-to-Image Diffusion Models"
(2023, https://arxiv.org/abs/2308.06721); the resampler follows Alayrac et al., "Flamingo" (2022,
https://arxiv.org/abs/2204.14198). Upstream: https://github.com/tencent-ailab/IP-Adapter, and diffusers'
`ImageProjection`, `IPAdapterPlusImageProjection`, `IPAdapterFullImageProjection`
(`diffusers/models/embeddings.py`), whose execution order these chains follow.
Weights: https://huggingface.co/h94/IP-Adapter (Apache-2.0).

Three kinds, by what they read:
- `ImageProjection` (IP-Adapter): the projected image embedding (B, D) → a linear map to `num_tokens`
  tokens, layer-normed.
- `PerceiverResampler` (IP-Adapter plus): the encoder's penultimate hidden states (B, L, D) → `num_tokens`
  learned queries attend, layer after layer, to the features and to themselves; projected and normed.
- `MLPImageProjection` (IP-Adapter full-face): the penultimate hidden states (B, L, D) → an MLP per token.
"""

from __future__ import annotations

import torch

import zoo.fluxion as fl
from zoo.fluxion.layers.weighted import Device, DType


class ImageProjection(fl.Chain):
    """(B, embedding_dim) → (B, num_tokens, cross_attention_dim): linear, split into tokens, layer norm."""

    def __init__(
        self,
        embedding_dim: int,
        cross_attention_dim: int,
        num_tokens: int,
        eps: float = 1e-5,
        device: Device = None,
        dtype: DType = None,
    ) -> None:
        super().__init__(
            fl.Linear(embedding_dim, num_tokens * cross_attention_dim, device=device, dtype=dtype),
            fl.Reshape(num_tokens, cross_attention_dim),
            fl.LayerNorm(cross_attention_dim, eps=eps, device=device, dtype=dtype),
        )


class MLPImageProjection(fl.Chain):
    """(B, L, embedding_dim) → (B, L, cross_attention_dim): linear, GELU, linear, layer norm, per token."""

    def __init__(
        self,
        embedding_dim: int,
        cross_attention_dim: int,
        eps: float = 1e-5,
        device: Device = None,
        dtype: DType = None,
    ) -> None:
        super().__init__(
            fl.Linear(embedding_dim, embedding_dim, device=device, dtype=dtype),
            fl.GeLU(),
            fl.Linear(embedding_dim, cross_attention_dim, device=device, dtype=dtype),
            fl.LayerNorm(cross_attention_dim, eps=eps, device=device, dtype=dtype),
        )


# -- the perceiver resampler ------------------------------------------------------------------------


class LatentQueries(fl.Parameter):
    """The learned queries (1, num_tokens, dim), repeated for each sample of the batch."""

    def forward(self, *args: object) -> torch.Tensor:
        features = args[0]
        assert isinstance(features, torch.Tensor)
        return self.weight.repeat(features.shape[0], 1, 1)


class PerceiverAttention(fl.Chain):
    """(latents, features) → attention of the normed latents to [normed features, normed latents].

    The features are normed first, as upstream does (the two norms have the same shape, so only their
    order tells them apart when weights are mapped).
    """

    def __init__(
        self, dim: int, num_heads: int, head_dim: int, eps: float, device: Device = None, dtype: DType = None
    ) -> None:
        super().__init__(
            fl.Parallel(
                fl.Chain(fl.GetArg(1), fl.LayerNorm(dim, eps=eps, device=device, dtype=dtype)),
                fl.Chain(fl.GetArg(0), fl.LayerNorm(dim, eps=eps, device=device, dtype=dtype)),
            ),
            fl.Parallel(fl.GetArg(1), fl.Concatenate(fl.GetArg(0), fl.GetArg(1), dim=1)),
            fl.Parallel(fl.GetArg(0), fl.GetArg(1), fl.GetArg(1)),
            fl.Attention(
                dim,
                num_heads=num_heads,
                inner_dim=num_heads * head_dim,
                use_bias=False,
                out_bias=False,
                device=device,
                dtype=dtype,
            ),
        )


class ResamplerFeedForward(fl.Residual):
    """latents + linear(GELU(linear(layer norm(latents)))), without biases."""

    def __init__(
        self, dim: int, multiplier: int, eps: float, device: Device = None, dtype: DType = None
    ) -> None:
        hidden = dim * multiplier
        super().__init__(
            fl.LayerNorm(dim, eps=eps, device=device, dtype=dtype),
            fl.Linear(dim, hidden, bias=False, device=device, dtype=dtype),
            fl.GeLU(),
            fl.Linear(hidden, dim, bias=False, device=device, dtype=dtype),
        )


class ResamplerLayer(fl.Chain):
    """(latents, features) → (latents + attention, features), then the latents' feed-forward."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        head_dim: int,
        multiplier: int,
        eps: float,
        device: Device = None,
        dtype: DType = None,
    ) -> None:
        super().__init__(
            fl.Parallel(
                fl.Sum(PerceiverAttention(dim, num_heads, head_dim, eps, device, dtype), fl.GetArg(0)),
                fl.GetArg(1),
            ),
            fl.Distribute(ResamplerFeedForward(dim, multiplier, eps, device, dtype), fl.Identity()),
        )


class PerceiverResampler(fl.Chain):
    """(B, L, embedding_dim) features → (B, num_tokens, cross_attention_dim) tokens.

    Learned queries (width `dim`) attend to the projected features over `depth` layers; the result is
    projected to the cross-attention width and layer-normed.
    """

    def __init__(
        self,
        embedding_dim: int,
        cross_attention_dim: int,
        num_tokens: int,
        dim: int,
        depth: int,
        head_dim: int,
        ff_multiplier: int,
        eps: float = 1e-5,
        device: Device = None,
        dtype: DType = None,
    ) -> None:
        heads = dim // head_dim
        layers = [
            ResamplerLayer(dim, heads, head_dim, ff_multiplier, eps, device, dtype) for _ in range(depth)
        ]
        super().__init__(
            fl.Parallel(
                LatentQueries(1, num_tokens, dim, device=device, dtype=dtype),
                fl.Linear(embedding_dim, dim, device=device, dtype=dtype),
            ),
            *layers,
            fl.GetArg(0),
            fl.Linear(dim, cross_attention_dim, device=device, dtype=dtype),
            fl.LayerNorm(cross_attention_dim, eps=eps, device=device, dtype=dtype),
        )


__all__ = [
    "ImageProjection",
    "LatentQueries",
    "MLPImageProjection",
    "PerceiverAttention",
    "PerceiverResampler",
    "ResamplerFeedForward",
    "ResamplerLayer",
]

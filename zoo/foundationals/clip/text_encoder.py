"""CLIP text encoder: the text tower of CLIP, as used for Stable Diffusion's text conditioning.

Paper: Radford et al., "Learning Transferable Visual Models From Natural Language Supervision"
(2021, https://arxiv.org/abs/2103.00020); OpenCLIP: Cherti et al., "Reproducible scaling laws for
contrastive language-image learning" (2022, https://arxiv.org/abs/2212.07143).
Upstream: https://github.com/openai/CLIP (ViT-L/14), https://github.com/mlfoundations/open_clip
(ViT-bigG/14); the layout followed here is transformers' `CLIPTextModel` /
`CLIPTextModelWithProjection`.
Weights: OpenAI CLIP ViT-L/14 is MIT-licensed; OpenCLIP ViT-bigG/14 (LAION-2B) is MIT-licensed. As
shipped inside Stable Diffusion repositories they are distributed under those repositories' licences
(CreativeML OpenRAIL-M for SD 1.5, CreativeML OpenRAIL++-M for SDXL).

The tower is a pre-norm causal transformer over token + position embeddings, ending in a layer norm:

    ids ─► TokenEncoder ─► TransformerLayer × N ─► LayerNorm ─► last hidden state
                                       │ (before layer N)          │
                                       └─► "penultimate"           └─► Pooling ─► "pooled"

Its forward returns the last hidden state. While it runs, it also stores in its context (named by
`context_name`) the penultimate hidden state (the input of the last layer, i.e. transformers'
`hidden_states[-2]`, without the final norm) and the pooled output (the final-normed state at the
end-of-text token, projected when the config has a projection: transformers' `pooler_output` or
`text_embeds`). A parent chain reads them with `fl.UseContext`; `encode` returns all three.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch

import zoo.fluxion as fl
from zoo.fluxion.layers.weighted import Device, DType
from zoo.foundationals.clip.transformer_layer import (
    Activation,
    AttentionBlock,
    FeedForwardBlock,
    TransformerLayer,
)


@dataclass(frozen=True)
class CLIPTextEncoderConfig:
    """Architecture of a CLIP text tower (defaults: OpenAI CLIP ViT-L/14, as in SD 1.5 and SDXL).

    Attributes:
        vocab_size: Number of token ids.
        max_position_embeddings: Longest sequence (77 for every released CLIP).
        hidden_size: Width of the residual stream.
        num_layers: Transformer layers.
        num_heads: Attention heads per layer.
        intermediate_size: Width of the feed-forward hidden layer.
        activation: Feed-forward activation: `quick_gelu` (OpenAI CLIP) or `gelu` (OpenCLIP).
        layer_norm_eps: Epsilon of every layer norm.
        projection_dim: Output width of the text projection applied to the pooled state; None for a
            tower without projection (transformers' `CLIPTextModel`).
        eos_token_id: Pooling reads the first position holding this id; None pools at the position of
            the highest id, as transformers does for legacy configs whose `eos_token_id` is 2 (every
            Stable Diffusion text encoder: the end-of-text token is the highest id of CLIP's vocab).
    """

    vocab_size: int = 49408
    max_position_embeddings: int = 77
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    activation: Activation = "quick_gelu"
    layer_norm_eps: float = 1e-5
    projection_dim: int | None = None
    eos_token_id: int | None = None

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not a multiple of num_heads {self.num_heads}"
            )
        if self.num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, got {self.num_layers}")

    @classmethod
    def clip_l(cls) -> CLIPTextEncoderConfig:
        """OpenAI CLIP ViT-L/14 (SD 1.5's text encoder and SDXL's first one): 123 M parameters."""
        return cls()

    @classmethod
    def open_clip_big_g(cls) -> CLIPTextEncoderConfig:
        """OpenCLIP ViT-bigG/14 with its text projection (SDXL's second text encoder): 695 M parameters."""
        return cls(
            hidden_size=1280,
            num_layers=32,
            num_heads=20,
            intermediate_size=5120,
            activation="gelu",
            projection_dim=1280,
        )

    @classmethod
    def tiny(cls) -> CLIPTextEncoderConfig:
        """A test twin of CLIP-L (full sequence length, narrow and shallow)."""
        return cls(vocab_size=1000, hidden_size=32, num_layers=3, num_heads=4, intermediate_size=64)

    @classmethod
    def tiny_with_projection(cls) -> CLIPTextEncoderConfig:
        """A test twin of bigG: gelu, and a projection to a width unlike the hidden one."""
        return cls(
            vocab_size=1000,
            hidden_size=40,
            num_layers=3,
            num_heads=5,
            intermediate_size=80,
            activation="gelu",
            projection_dim=24,
        )


class CLIPTextOutput(NamedTuple):
    """Everything a CLIP text tower computes for one batch of token ids.

    Attributes:
        last_hidden_state: (B, L, hidden) after the final layer norm (SD 1.5's conditioning).
        penultimate_hidden_state: (B, L, hidden) input of the last layer, without the final norm
            (transformers' `hidden_states[-2]`, SDXL's conditioning).
        pooled: (B, projection_dim) projected pooled state when the config has a projection
            (`text_embeds`), else (B, hidden) pooled state (`pooler_output`).
    """

    last_hidden_state: torch.Tensor
    penultimate_hidden_state: torch.Tensor
    pooled: torch.Tensor


class TokenEmbedding(fl.Embedding):
    """One vector per token id."""


class PositionEmbedding(fl.Embedding):
    """One learned vector per position: maps (B, L) ids to the (L, hidden) embeddings of 0..L-1."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        length = input.shape[-1]
        if length > self.num_embeddings:
            raise ValueError(f"sequence length {length} exceeds the {self.num_embeddings} learned positions")
        return super().forward(torch.arange(length, device=input.device))


class TokenEncoder(fl.Sum):
    """Token ids (B, L) → token embeddings + position embeddings (B, L, hidden)."""

    def __init__(self, config: CLIPTextEncoderConfig, device: Device = None, dtype: DType = None) -> None:
        super().__init__(
            TokenEmbedding(config.vocab_size, config.hidden_size, device=device, dtype=dtype),
            PositionEmbedding(config.max_position_embeddings, config.hidden_size, device=device, dtype=dtype),
        )


class Transformer(fl.Chain):
    """The layers, storing the penultimate hidden state (the last layer's input) on the way."""

    def __init__(
        self, config: CLIPTextEncoderConfig, context: str, device: Device = None, dtype: DType = None
    ) -> None:
        layers = [
            TransformerLayer(config, causal=True, device=device, dtype=dtype)
            for _ in range(config.num_layers)
        ]
        super().__init__(*layers[:-1], fl.SetContext(context, "penultimate"), layers[-1])


class TokenPooling(fl.ContextModule):
    """(B, L, hidden) → (B, hidden): the state at each sequence's end-of-text token.

    The token ids are read from the context, where the encoder stored them. With an `eos_token_id`
    the first position holding it is used (padding may repeat it); without, the position of the
    highest id (transformers' rule for legacy configs).
    """

    def __init__(self, context: str, eos_token_id: int | None) -> None:
        super().__init__()
        self.context, self.eos_token_id = context, eos_token_id

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        input_ids: torch.Tensor = self.use_context(self.context)["input_ids"].to(torch.int)
        if self.eos_token_id is None:
            positions = input_ids.argmax(dim=-1)
        else:
            positions = (input_ids == self.eos_token_id).int().argmax(dim=-1)
        return x[torch.arange(x.shape[0], device=x.device), positions.to(x.device)]

    def extra_repr(self) -> str:
        return f"context={self.context!r}, eos_token_id={self.eos_token_id}"


class TextProjection(fl.Linear):
    """The projection of the pooled state into the joint text-image space (no bias)."""


class Pooling(fl.Passthrough):
    """Pools (and projects) the final state into the context as `pooled`; returns its input."""

    def __init__(
        self, config: CLIPTextEncoderConfig, context: str, device: Device = None, dtype: DType = None
    ) -> None:
        projection = (
            []
            if config.projection_dim is None
            else [
                TextProjection(
                    config.hidden_size, config.projection_dim, bias=False, device=device, dtype=dtype
                )
            ]
        )
        super().__init__(
            TokenPooling(context, config.eos_token_id), *projection, fl.SetContext(context, "pooled")
        )


class CLIPTextEncoder(fl.Chain):
    """CLIP text tower: token ids (B, L) → last hidden state (B, L, hidden) after the final norm.

    The penultimate hidden state and the pooled output are stored in the context `context_name`
    (keys `penultimate` and `pooled`) during the forward; `encode` returns all three.

    Example:
        >>> import torch
        >>> encoder = CLIPTextEncoder(CLIPTextEncoderConfig.tiny())
        >>> encoder(torch.randint(0, 1000, (2, 77))).shape
        torch.Size([2, 77, 32])
        >>> encoder.encode(torch.randint(0, 1000, (2, 77))).pooled.shape
        torch.Size([2, 32])
    """

    context_name: ClassVar[str] = "clip_text"

    def __init__(self, config: CLIPTextEncoderConfig, device: Device = None, dtype: DType = None) -> None:
        self.config = config
        context = self.context_name
        super().__init__(
            fl.SetContext(context, "input_ids"),
            TokenEncoder(config, device=device, dtype=dtype),
            Transformer(config, context, device=device, dtype=dtype),
            fl.LayerNorm(config.hidden_size, eps=config.layer_norm_eps, device=device, dtype=dtype),
            Pooling(config, context, device=device, dtype=dtype),
        )

    def encode(self, input_ids: torch.Tensor) -> CLIPTextOutput:
        """Run once and return the last and penultimate hidden states and the pooled output."""
        with self.keeping_context() as provider:
            last = self(input_ids)
            values = provider.get_context(self.context_name)
            return CLIPTextOutput(last, values["penultimate"], values["pooled"])


__all__ = [
    "AttentionBlock",
    "CLIPTextEncoder",
    "CLIPTextEncoderConfig",
    "CLIPTextOutput",
    "FeedForwardBlock",
    "Pooling",
    "PositionEmbedding",
    "TextProjection",
    "TokenEmbedding",
    "TokenEncoder",
    "TokenPooling",
    "Transformer",
    "TransformerLayer",
]

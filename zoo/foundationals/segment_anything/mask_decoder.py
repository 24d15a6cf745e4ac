"""Segment Anything's mask decoder: a two-way transformer between prompt tokens and the image, then
masks from hypernetworks and a mask-quality (IoU) head.

Paper: Kirillov et al., "Segment Anything" (ICCV 2023, https://arxiv.org/abs/2304.02643), section 3 and
appendix A ("Lightweight mask decoder").
Upstream: https://github.com/facebookresearch/segment-anything (`modeling/mask_decoder.py`,
`modeling/transformer.py`), and transformers' `SamMaskDecoder`, whose execution order this follows.
Weights: the SAM ViT-B/L/H checkpoints are released under the Apache 2.0 licence.

    sparse prompts (B, N, C) ─► [IoU token, mask tokens…, prompts] ─┐
    image embedding + dense prompts, positions (context) ────────────┴─► two-way transformer
          ├─ image tokens ─► upscaled ×4 ─┐
          ├─ mask tokens ─► hypernetwork MLPs ─┴─► mask logits (B, M, 4h, 4w)
          └─ IoU token ─► IoU head ─► predicted IoU (B, M)
    then the multimask masks (1…M−1) or the single mask (0) are kept.

The decoder's call takes the sparse prompt embeddings; the image embedding, the dense prompt embeddings,
their positional encoding and `multimask_output` are read from the context `DECODER_CONTEXT`, which
`SegmentAnything.decode` sets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

import zoo.fluxion as fl
from zoo.fluxion.layers.weighted import Device, DType
from zoo.foundationals.segment_anything.layers import ConvTranspose2d, LayerNorm2d, MultiLayerPerceptron

DECODER_CONTEXT = "segment_anything_decoder"

# -- config -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MaskDecoderConfig:
    """Architecture of the mask decoder (defaults: the original release's).

    Attributes:
        embed_dim: Width of the tokens and of the image embedding.
        depth: Two-way transformer blocks.
        num_heads: Attention heads (the one number a checkpoint's shapes do not show).
        mlp_dim: Hidden width of the token feed-forward layers.
        attention_downsample_rate: The attentions between tokens and image project to
            embed_dim / rate channels.
        num_multimask_outputs: Masks predicted for an ambiguous prompt (plus one single mask).
        iou_head_depth: Layers of the IoU head.
        iou_head_hidden_dim: Hidden width of the IoU head.
        hypernetwork_depth: Layers of each mask token's hypernetwork.
        layer_norm_eps: Epsilon of the layer norms in the two-way blocks (1e-5 in the original code,
            1e-6 in transformers' port).
        final_layer_norm_eps: Epsilon of the layer norm after the final attention.
        upscale_norm_eps: Epsilon of the channel-wise layer norm of the upscaling.
    """

    embed_dim: int = 256
    depth: int = 2
    num_heads: int = 8
    mlp_dim: int = 2048
    attention_downsample_rate: int = 2
    num_multimask_outputs: int = 3
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256
    hypernetwork_depth: int = 3
    layer_norm_eps: float = 1e-5
    final_layer_norm_eps: float = 1e-5
    upscale_norm_eps: float = 1e-6

    def __post_init__(self) -> None:
        inner = self.embed_dim // self.attention_downsample_rate
        if self.embed_dim % 8 or inner % self.num_heads or self.embed_dim % self.num_heads:
            raise ValueError(
                f"embed_dim {self.embed_dim} must be a multiple of 8 and, divided by 1 and by "
                f"attention_downsample_rate {self.attention_downsample_rate}, of num_heads {self.num_heads}"
            )

    @property
    def num_mask_tokens(self) -> int:
        """The single mask's token and one per multimask output."""
        return self.num_multimask_outputs + 1

    @classmethod
    def tiny(cls) -> MaskDecoderConfig:
        """The mask decoder of `SegmentAnythingConfig.tiny()`: 8 heads, as every release (an original
        checkpoint's shapes do not show the number)."""
        return cls(embed_dim=32, mlp_dim=64, iou_head_hidden_dim=24)


# -- tokens and image ----------------------------------------------------------------------------------


class OutputTokens(fl.WeightedModule):
    """The learned output tokens (the IoU token, then one per mask), repeated for each prompt."""

    def __init__(self, count: int, embed_dim: int, device: Device = None, dtype: DType = None) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(count, embed_dim, device=device, dtype=dtype))

    def forward(self, sparse: torch.Tensor) -> torch.Tensor:
        return self.weight[None].expand(sparse.shape[0], -1, -1)


class Tokens(fl.Concatenate):
    """Sparse prompt embeddings (B, N, C) → the decoder's tokens (B, T + N, C), output tokens first."""

    def __init__(self, config: MaskDecoderConfig, device: Device = None, dtype: DType = None) -> None:
        tokens = OutputTokens(1 + config.num_mask_tokens, config.embed_dim, device=device, dtype=dtype)
        super().__init__(tokens, fl.Identity(), dim=1)


class ImageTokens(fl.ContextModule):
    """Tokens (B, T, C) → the image embedding plus the dense prompts, as (B, h·w, C) tokens per prompt.

    Also stores the positional encoding of those image tokens in the context, for the attentions.
    """

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        values = self.use_context(DECODER_CONTEXT)
        batch = tokens.shape[0]
        image = torch.repeat_interleave(values["image_embedding"], batch, dim=0) + values["dense_prompt"]
        positions = torch.repeat_interleave(values["dense_positions"], batch, dim=0)
        values["key_positions"] = positions.flatten(2).transpose(1, 2)
        return image.flatten(2).transpose(1, 2)


class Streams(fl.Parallel):
    """Tokens → (queries, image tokens): the tokens as they are, and the image as tokens."""

    def __init__(self) -> None:
        super().__init__(fl.Identity(), ImageTokens())


# -- two-way transformer --------------------------------------------------------------------------------


class StreamModule(fl.Chain):
    """Base of the modules acting on the two streams (queries, keys) → (queries, keys)."""

    def positions(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The positional encodings of the queries (the initial tokens) and of the keys (the image)."""
        values = self.use_context(DECODER_CONTEXT)
        return values["query_positions"], values["key_positions"]

    @property
    def attention(self) -> fl.Attention:
        return self.layer(0, fl.Attention)


def _attention(config: MaskDecoderConfig, downsample: int, device: Device, dtype: DType) -> fl.Attention:
    inner = config.embed_dim // downsample
    return fl.Attention(config.embed_dim, config.num_heads, inner_dim=inner, device=device, dtype=dtype)


class TokenSelfAttention(StreamModule):
    """Queries attend to themselves; the first block replaces the queries instead of adding, and
    gives the attention no positions (the queries are their own positions there)."""

    def __init__(
        self, config: MaskDecoderConfig, first: bool, device: Device = None, dtype: DType = None
    ) -> None:
        self.first = first
        super().__init__(_attention(config, 1, device, dtype))

    def forward(self, queries: torch.Tensor, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # pyright: ignore[reportIncompatibleMethodOverride]
        if self.first:
            return self.attention(queries, queries, queries), keys
        query_positions, _ = self.positions()
        positioned = queries + query_positions
        return queries + self.attention(positioned, positioned, queries), keys

    def extra_repr(self) -> str:
        return f"first={self.first}"


class TokenToImageAttention(StreamModule):
    """Queries attend to the image tokens (positions added to both)."""

    def __init__(self, config: MaskDecoderConfig, device: Device = None, dtype: DType = None) -> None:
        super().__init__(_attention(config, config.attention_downsample_rate, device, dtype))

    def forward(self, queries: torch.Tensor, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # pyright: ignore[reportIncompatibleMethodOverride]
        query_positions, key_positions = self.positions()
        update = self.attention(queries + query_positions, keys + key_positions, keys)
        return queries + update, keys


class ImageToTokenAttention(StreamModule):
    """The image tokens attend to the queries (positions added to both)."""

    def __init__(self, config: MaskDecoderConfig, device: Device = None, dtype: DType = None) -> None:
        super().__init__(_attention(config, config.attention_downsample_rate, device, dtype))

    def forward(self, queries: torch.Tensor, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # pyright: ignore[reportIncompatibleMethodOverride]
        query_positions, key_positions = self.positions()
        update = self.attention(keys + key_positions, queries + query_positions, queries)
        return queries, keys + update


class OnQueries(fl.Chain):
    """Runs its children on the queries; the keys pass unchanged."""

    def forward(self, queries: torch.Tensor, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # pyright: ignore[reportIncompatibleMethodOverride]
        return super().forward(queries), keys


class OnKeys(fl.Chain):
    """Runs its children on the keys; the queries pass unchanged."""

    def forward(self, queries: torch.Tensor, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # pyright: ignore[reportIncompatibleMethodOverride]
        return queries, super().forward(keys)


class TokenFeedForward(fl.Residual):
    """x + lin2(relu(lin1(x))) on the queries."""

    def __init__(self, config: MaskDecoderConfig, device: Device = None, dtype: DType = None) -> None:
        super().__init__(
            fl.Linear(config.embed_dim, config.mlp_dim, device=device, dtype=dtype),
            fl.ReLU(),
            fl.Linear(config.mlp_dim, config.embed_dim, device=device, dtype=dtype),
        )


class TwoWayBlock(fl.Chain):
    """Token self-attention, tokens → image, token MLP, image → tokens; each followed by a layer norm."""

    def __init__(
        self, config: MaskDecoderConfig, first: bool, device: Device = None, dtype: DType = None
    ) -> None:
        def norm() -> fl.LayerNorm:
            return fl.LayerNorm(config.embed_dim, eps=config.layer_norm_eps, device=device, dtype=dtype)

        super().__init__(
            TokenSelfAttention(config, first, device=device, dtype=dtype),
            OnQueries(norm()),
            TokenToImageAttention(config, device=device, dtype=dtype),
            OnQueries(norm()),
            OnQueries(TokenFeedForward(config, device=device, dtype=dtype)),
            OnQueries(norm()),
            ImageToTokenAttention(config, device=device, dtype=dtype),
            OnKeys(norm()),
        )


class TwoWayTransformer(fl.Chain):
    """(queries, image tokens) → (queries, image tokens): the blocks, then a last tokens → image attention."""

    def __init__(self, config: MaskDecoderConfig, device: Device = None, dtype: DType = None) -> None:
        eps = config.final_layer_norm_eps
        super().__init__(
            *(TwoWayBlock(config, index == 0, device=device, dtype=dtype) for index in range(config.depth)),
            TokenToImageAttention(config, device=device, dtype=dtype),
            OnQueries(fl.LayerNorm(config.embed_dim, eps=eps, device=device, dtype=dtype)),
        )


# -- heads ----------------------------------------------------------------------------------------------


class ImageTokensToMap(fl.ContextModule):
    """(B, h·w, C) image tokens → (B, C, h, w), the image embedding's layout."""

    def forward(self, keys: torch.Tensor) -> torch.Tensor:
        height, width = self.use_context(DECODER_CONTEXT)["image_embedding"].shape[-2:]
        return keys.transpose(1, 2).reshape(keys.shape[0], keys.shape[2], height, width)


class Upscaling(fl.Chain):
    """(B, C, h, w) → (B, C/8, 4h, 4w): two stride-2 transposed convolutions."""

    def __init__(self, config: MaskDecoderConfig, device: Device = None, dtype: DType = None) -> None:
        width = config.embed_dim
        super().__init__(
            ConvTranspose2d(width, width // 4, 2, stride=2, device=device, dtype=dtype),
            LayerNorm2d(width // 4, eps=config.upscale_norm_eps, device=device, dtype=dtype),
            fl.GeLU(),
            ConvTranspose2d(width // 4, width // 8, 2, stride=2, device=device, dtype=dtype),
            fl.GeLU(),
        )


class Hypernetworks(fl.Chain):
    """One MLP per mask token: tokens (B, ≥M, C) → mask weights (B, M, C/8), from the first M tokens."""

    def __init__(self, config: MaskDecoderConfig, device: Device = None, dtype: DType = None) -> None:
        width = config.embed_dim
        super().__init__(
            MultiLayerPerceptron(
                width, width, width // 8, config.hypernetwork_depth, device=device, dtype=dtype
            )
            for _ in range(config.num_mask_tokens)
        )

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        tokens = args[0]
        return torch.stack([mlp(tokens[:, index]) for index, mlp in enumerate(self)], dim=1)


def masks_from(weights: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """Mask weights (B, M, c) · upscaled features (B, c, H, W) → mask logits (B, M, H, W)."""
    batch, channels, height, width = features.shape
    return (weights @ features.reshape(batch, channels, height * width)).reshape(batch, -1, height, width)


class MaskPrediction(fl.Chain):
    """(mask tokens (B, ≥M, C), upscaled image (B, C/8, H, W)) → mask logits (B, M, H, W)."""

    def __init__(self, config: MaskDecoderConfig, device: Device = None, dtype: DType = None) -> None:
        super().__init__(Hypernetworks(config, device=device, dtype=dtype))

    def forward(self, tokens: torch.Tensor, features: torch.Tensor) -> torch.Tensor:  # pyright: ignore[reportIncompatibleMethodOverride]
        return masks_from(self.layer(0, Hypernetworks)(tokens), features)


class TokenAt(fl.ContextModule):
    """(B, T, C) → (B, C): the token at `index`."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens[:, self.index]

    def extra_repr(self) -> str:
        return f"index={self.index}"


class MaskBranch(fl.Chain):
    """(queries, image tokens) → mask logits: every token after the IoU token, against the upscaled image."""

    def __init__(self, config: MaskDecoderConfig, device: Device = None, dtype: DType = None) -> None:
        super().__init__(
            fl.Parallel(
                fl.Chain(fl.GetArg(0), fl.Slicing(dim=1, start=1)),
                fl.Chain(fl.GetArg(1), ImageTokensToMap(), Upscaling(config, device=device, dtype=dtype)),
            ),
            MaskPrediction(config, device=device, dtype=dtype),
        )


class IoUHead(MultiLayerPerceptron):
    """The IoU token (B, C) → the predicted IoU of each mask (B, M)."""


class IoUBranch(fl.Chain):
    """(queries, image tokens) → predicted IoUs, from the first token."""

    def __init__(self, config: MaskDecoderConfig, device: Device = None, dtype: DType = None) -> None:
        super().__init__(
            fl.GetArg(0),
            TokenAt(0),
            IoUHead(
                config.embed_dim,
                config.iou_head_hidden_dim,
                config.num_mask_tokens,
                config.iou_head_depth,
                device=device,
                dtype=dtype,
            ),
        )


class Heads(fl.Parallel):
    """(queries, image tokens) → (mask logits, predicted IoUs)."""

    def __init__(self, config: MaskDecoderConfig, device: Device = None, dtype: DType = None) -> None:
        super().__init__(
            MaskBranch(config, device=device, dtype=dtype), IoUBranch(config, device=device, dtype=dtype)
        )


class MaskSelection(fl.ContextModule):
    """(masks (B, M, H, W), IoUs (B, M)) → the multimask outputs (1…M−1), or the single mask (0).

    Which one is read from the context (`multimask_output`).
    """

    def forward(self, masks: torch.Tensor, iou: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kept = slice(1, None) if self.use_context(DECODER_CONTEXT)["multimask_output"] else slice(0, 1)
        return masks[:, kept], iou[:, kept]


# -- model ------------------------------------------------------------------------------------------


class MaskDecoder(fl.Chain):
    """Sparse prompt embeddings (B, N, C) → (mask logits (B, M', 4h, 4w), predicted IoUs (B, M')).

    The image embedding (1, C, h, w), the dense prompts (B, C, h, w), their positional encoding
    (1, C, h, w) and `multimask_output` come from the context `DECODER_CONTEXT` (see `decoder_context`).

    Example:
        >>> import torch
        >>> decoder = MaskDecoder(MaskDecoderConfig.tiny())
        >>> image, dense = torch.randn(1, 32, 6, 6), torch.randn(2, 32, 6, 6)
        >>> decoder.set_context(DECODER_CONTEXT, decoder_context(image, dense, torch.randn(1, 32, 6, 6), True))
        >>> [tuple(t.shape) for t in decoder(torch.randn(2, 3, 32))]
        [(2, 3, 24, 24), (2, 3)]
    """

    def __init__(self, config: MaskDecoderConfig, device: Device = None, dtype: DType = None) -> None:
        self.config = config
        super().__init__(
            Tokens(config, device=device, dtype=dtype),
            fl.SetContext(DECODER_CONTEXT, "query_positions"),
            Streams(),
            TwoWayTransformer(config, device=device, dtype=dtype),
            Heads(config, device=device, dtype=dtype),
            MaskSelection(),
        )


def decoder_context(
    image_embedding: torch.Tensor, dense_prompt: torch.Tensor, dense_positions: torch.Tensor, multimask: bool
) -> dict[str, Any]:
    """The values `MaskDecoder` reads from its context."""
    return {
        "image_embedding": image_embedding,
        "dense_prompt": dense_prompt,
        "dense_positions": dense_positions,
        "multimask_output": multimask,
    }


__all__ = [
    "DECODER_CONTEXT",
    "Heads",
    "ImageToTokenAttention",
    "ImageTokens",
    "ImageTokensToMap",
    "IoUBranch",
    "IoUHead",
    "MaskBranch",
    "MaskDecoder",
    "MaskDecoderConfig",
    "MaskPrediction",
    "MaskSelection",
    "OnKeys",
    "OnQueries",
    "OutputTokens",
    "StreamModule",
    "Streams",
    "TokenAt",
    "TokenFeedForward",
    "TokenSelfAttention",
    "TokenToImageAttention",
    "Tokens",
    "TwoWayBlock",
    "TwoWayTransformer",
    "Upscaling",
    "decoder_context",
    "masks_from",
]

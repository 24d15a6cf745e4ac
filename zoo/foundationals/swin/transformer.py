"""Swin Transformer (V1): a hierarchical vision backbone of shifted-window attention.

Paper: Liu et al., "Swin Transformer: Hierarchical Vision Transformer using Shifted Windows" (ICCV 2021,
https://arxiv.org/abs/2103.14030).
Upstream: https://github.com/microsoft/Swin-Transformer (code and weights released under the MIT
licence); the layout followed here is transformers' `SwinModel` (the Hub's `microsoft/swin-*`).

    image ─► PatchEmbedding ─► SwinStage_1 ─► … ─► SwinStage_n ─► LayerNorm ─► tokens (B, H·W, C)
                                  │ blocks, then PatchMerging (not in the last stage)    └─► pooled (B, C)
                                  └─► stage features (B, C_i, H_i, W_i), before the merging

Each stage runs pairs of blocks, the second of each pair on windows shifted by half a window
(`zoo.foundationals.swin.attention`), then merges 2×2 neighbouring tokens into one of twice the width.
The model accepts any image size: images and feature maps are padded at the bottom and right as
transformers pads them, and a stage whose map is only one window wide is not shifted.

Its forward returns the last hidden state (transformers' `last_hidden_state`). While it runs, it stores
each stage's output before the merging (the features a dense-prediction head reads: transformers'
`reshaped_hidden_states` with `output_hidden_states_before_downsampling=True`, timm's
`forward_intermediates`) and the mean-pooled tokens (`pooler_output`) in its context; `encode`
returns them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch
from torch.nn import functional as F

import zoo.fluxion as fl
from zoo.fluxion.layers.weighted import Device, DType
from zoo.foundationals.swin.attention import WindowAttention, WindowMerge, WindowPartition

# The patch embedding's and the patch merging's norms keep torch's default epsilon in every reference
# implementation, whatever the config's `layer_norm_eps` (which only the blocks and the final norm read).
FIXED_NORM_EPS = 1e-5
MERGE_STRIDE = 2  # patch merging groups 2×2 neighbouring tokens, halving the height and width,
MERGED_WIDTH = 2  # and projects them to twice the width


@dataclass(frozen=True)
class SwinConfig:
    """Architecture of a Swin Transformer (defaults: Swin-T, 224 pixels, window 7).

    Attributes:
        image_size: Side of the images the weights were trained on (other sizes run too).
        patch_size: Side of the square patches embedded as tokens.
        num_channels: Channels of the input images.
        embed_dim: Width of the first stage; each later stage is twice as wide.
        depths: Blocks per stage.
        num_heads: Attention heads per stage.
        window_size: Side of the attention windows, in tokens; shifted blocks roll by half of it.
        mlp_ratio: Width of the feed-forward hidden layer, relative to the stage width.
        qkv_bias: Whether the query, key and value projections have biases.
        layer_norm_eps: Epsilon of the blocks' norms and of the final norm.
    """

    image_size: int = 224
    patch_size: int = 4
    num_channels: int = 3
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    window_size: int = 7
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    layer_norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        if not self.depths or len(self.depths) != len(self.num_heads):
            raise ValueError(f"depths {self.depths} and num_heads {self.num_heads}: one of each per stage")
        if min(self.depths) < 1 or self.window_size < 1 or self.patch_size < 1:
            raise ValueError(f"depths {self.depths}, window_size and patch_size must be at least 1")
        for stage, heads in enumerate(self.num_heads):
            if self.stage_dim(stage) % heads:
                raise ValueError(
                    f"stage {stage} width {self.stage_dim(stage)} is not a multiple of {heads} heads"
                )

    def stage_dim(self, stage: int) -> int:
        """Width of a stage's tokens (0-based)."""
        return self.embed_dim * MERGED_WIDTH**stage

    @property
    def num_features(self) -> int:
        """Width of the last stage, of the final norm and of the pooled output."""
        return self.stage_dim(len(self.depths) - 1)

    @property
    def shift_size(self) -> int:
        """How far shifted blocks roll their windows: half a window, as in every Swin."""
        return self.window_size // 2

    @classmethod
    def tiny(cls) -> SwinConfig:
        """Swin-T (224 pixels, window 7): 27.5 M parameters."""
        return cls()

    @classmethod
    def small(cls) -> SwinConfig:
        """Swin-S (224 pixels, window 7): 48.8 M parameters."""
        return cls(depths=(2, 2, 18, 2))

    @classmethod
    def base(cls) -> SwinConfig:
        """Swin-B (224 pixels, window 7): 86.7 M parameters."""
        return cls(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32))

    @classmethod
    def large(cls) -> SwinConfig:
        """Swin-L (224 pixels, window 7): 195 M parameters."""
        return cls(embed_dim=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48))

    @classmethod
    def base_window12(cls) -> SwinConfig:
        """Swin-B at 384 pixels with 12×12 windows: 86.9 M parameters."""
        return cls(
            image_size=384, embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), window_size=12
        )

    @classmethod
    def large_window12(cls) -> SwinConfig:
        """Swin-L at 384 pixels with 12×12 windows: 195 M parameters."""
        return cls(
            image_size=384, embed_dim=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48), window_size=12
        )

    @classmethod
    def toy(cls) -> SwinConfig:
        """A test twin (37 K parameters): three stages, shifted and unshifted windows, a 3-wide window."""
        return cls(
            image_size=24, patch_size=2, embed_dim=8, depths=(2, 2, 2), num_heads=(2, 2, 4), window_size=3
        )


class SwinOutput(NamedTuple):
    """Everything a Swin backbone computes for one batch of images.

    Attributes:
        stages: Per stage, (B, C_i, H_i, W_i) after its blocks and before its patch merging (no norm).
        last_hidden_state: (B, H·W, C) tokens of the last stage after the final norm.
        pooled: (B, C) mean of `last_hidden_state` over the tokens.
    """

    stages: tuple[torch.Tensor, ...]
    last_hidden_state: torch.Tensor
    pooled: torch.Tensor


class PadToPatches(fl.ContextModule):
    """Pads (B, C, H, W) images with zeros at the bottom and right to whole patches."""

    def __init__(self, patch_size: int) -> None:
        super().__init__()
        self.patch_size = patch_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        return F.pad(x, (0, -width % self.patch_size, 0, -height % self.patch_size))

    def extra_repr(self) -> str:
        return f"patch_size={self.patch_size}"


class PatchEmbedding(fl.Chain):
    """(B, C, H, W) images → (B, H / patch, W / patch, embed_dim) normalised patch tokens."""

    def __init__(self, config: SwinConfig, device: Device = None, dtype: DType = None) -> None:
        patch, width = config.patch_size, config.embed_dim
        super().__init__(
            PadToPatches(patch),
            fl.Conv2d(config.num_channels, width, patch, stride=patch, device=device, dtype=dtype),
            fl.Permute(0, 2, 3, 1),
            fl.LayerNorm(width, eps=FIXED_NORM_EPS, device=device, dtype=dtype),
        )


class AttentionBlock(fl.Residual):
    """x + window attention(layer norm(x)), on (B, H, W, C) maps."""

    def __init__(
        self,
        config: SwinConfig,
        stage: int,
        shift: int,
        context: str,
        device: Device = None,
        dtype: DType = None,
    ) -> None:
        dim, heads, window = config.stage_dim(stage), config.num_heads[stage], config.window_size
        super().__init__(
            fl.LayerNorm(dim, eps=config.layer_norm_eps, device=device, dtype=dtype),
            WindowPartition(window, shift, context),
            WindowAttention(dim, heads, window, context, config.qkv_bias, device=device, dtype=dtype),
            WindowMerge(context),
        )


class FeedForwardBlock(fl.Residual):
    """x + fc2(gelu(fc1(layer norm(x))))."""

    def __init__(self, config: SwinConfig, stage: int, device: Device = None, dtype: DType = None) -> None:
        dim = config.stage_dim(stage)
        hidden = int(config.mlp_ratio * dim)
        super().__init__(
            fl.LayerNorm(dim, eps=config.layer_norm_eps, device=device, dtype=dtype),
            fl.Linear(dim, hidden, device=device, dtype=dtype),
            fl.GeLU(),
            fl.Linear(hidden, dim, device=device, dtype=dtype),
        )


class SwinBlock(fl.Chain):
    """A Swin block: (shifted) window attention, then feed-forward, each with its residual."""

    def __init__(
        self,
        config: SwinConfig,
        stage: int,
        shift: int,
        context: str,
        device: Device = None,
        dtype: DType = None,
    ) -> None:
        super().__init__(
            AttentionBlock(config, stage, shift, context, device=device, dtype=dtype),
            FeedForwardBlock(config, stage, device=device, dtype=dtype),
        )


class MergeNeighbours(fl.ContextModule):
    """(B, H, W, C) → (B, H / 2, W / 2, 4C): each 2×2 group of tokens side by side, odd sides zero-padded.

    The four are concatenated as (top left, bottom left, top right, bottom right), the original order.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, height, width, channels = x.shape
        x = F.pad(x, (0, 0, 0, width % MERGE_STRIDE, 0, height % MERGE_STRIDE))
        stride = MERGE_STRIDE
        grid = x.reshape(batch, x.shape[1] // stride, stride, x.shape[2] // stride, stride, channels)
        return grid.permute(0, 1, 3, 4, 2, 5).flatten(3)


class PatchMerging(fl.Chain):
    """(B, H, W, C) → (B, H / 2, W / 2, 2C): 2×2 neighbours merged, normalised and projected."""

    def __init__(self, dim: int, device: Device = None, dtype: DType = None) -> None:
        merged = MERGE_STRIDE**2 * dim
        super().__init__(
            MergeNeighbours(),
            fl.LayerNorm(merged, eps=FIXED_NORM_EPS, device=device, dtype=dtype),
            fl.Linear(merged, MERGED_WIDTH * dim, bias=False, device=device, dtype=dtype),
        )


class SwinStage(fl.Chain):
    """A stage's blocks (every second one shifted); stores its output as `stage_<n>`; merges unless last."""

    def __init__(
        self, config: SwinConfig, stage: int, context: str, device: Device = None, dtype: DType = None
    ) -> None:
        shifts = [0 if index % 2 == 0 else config.shift_size for index in range(config.depths[stage])]
        blocks = [SwinBlock(config, stage, shift, context, device=device, dtype=dtype) for shift in shifts]
        last = stage == len(config.depths) - 1
        merging = [] if last else [PatchMerging(config.stage_dim(stage), device=device, dtype=dtype)]
        super().__init__(*blocks, fl.SetContext(context, stage_key(stage)), *merging)


def stage_key(stage: int) -> str:
    """Where a stage's output is stored in the context (`stage_1` for the first)."""
    return f"stage_{stage + 1}"


class MeanPooling(fl.ContextModule):
    """(B, L, C) → (B, C): the mean over the tokens."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1)


class SwinTransformer(fl.Chain):
    """Swin backbone: images (B, C, H, W) → last hidden state (B, H·W, C) after the final norm.

    Each stage's features and the pooled output are stored in the context `context_name` (keys
    `stage_1`… and `pooled`) during the forward; `encode` returns them all.

    Example:
        >>> import torch
        >>> model = SwinTransformer(SwinConfig.toy())
        >>> model(torch.randn(2, 3, 24, 24)).shape
        torch.Size([2, 9, 32])
        >>> [tuple(f.shape) for f in model.encode(torch.randn(1, 3, 30, 40)).stages]
        [(1, 8, 15, 20), (1, 16, 8, 10), (1, 32, 4, 5)]
    """

    context_name: ClassVar[str] = "swin_transformer"

    def __init__(self, config: SwinConfig, device: Device = None, dtype: DType = None) -> None:
        self.config = config
        context = self.context_name
        super().__init__(
            PatchEmbedding(config, device=device, dtype=dtype),
            *(
                SwinStage(config, stage, context, device=device, dtype=dtype)
                for stage in range(len(config.depths))
            ),
            fl.LayerNorm(config.num_features, eps=config.layer_norm_eps, device=device, dtype=dtype),
            fl.Flatten(1, 2),
            fl.Passthrough(MeanPooling(), fl.SetContext(context, "pooled")),
        )

    def encode(self, images: torch.Tensor) -> SwinOutput:
        """Run once and return the stage features, the last hidden state and the pooled output."""
        with self.keeping_context() as provider:
            last = self(images)
            values = provider.get_context(self.context_name)
            stages = tuple(
                values[stage_key(stage)].permute(0, 3, 1, 2) for stage in range(len(self.config.depths))
            )
            return SwinOutput(stages, last, values["pooled"])


__all__ = [
    "AttentionBlock",
    "FeedForwardBlock",
    "MeanPooling",
    "MergeNeighbours",
    "PadToPatches",
    "PatchEmbedding",
    "PatchMerging",
    "SwinBlock",
    "SwinConfig",
    "SwinOutput",
    "SwinStage",
    "SwinTransformer",
    "stage_key",
]

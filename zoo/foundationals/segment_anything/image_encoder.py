"""Segment Anything's image encoder: a plain ViT with windowed and global attention, then a neck.

Paper: Kirillov et al., "Segment Anything" (ICCV 2023, https://arxiv.org/abs/2304.02643), section 3 and
appendix A; the backbone is ViTDet's (Li et al., "Exploring Plain Vision Transformer Backbones for Object
Detection", https://arxiv.org/abs/2203.16527), with MViTv2's decomposed relative positions.
Upstream: https://github.com/facebookresearch/segment-anything (`modeling/image_encoder.py`), and
transformers' `SamVisionEncoder`, whose execution order this model follows for key tracing.
Weights: the SAM ViT-B/L/H checkpoints are released under the Apache 2.0 licence.

A normalised, padded (B, 3, S, S) image becomes a (B, out_channels, S/p, S/p) embedding:

    image ─► patches (stride p) + absolute positions ─► block × depth ─► neck ─► embedding
                                                          │
               most blocks attend within windows, `global_attention_blocks` attend over the whole map;
               every attention adds decomposed relative position biases (one table per axis).

Feature maps stay channels-last (B, H, W, C) inside the transformer, as upstream's do.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

import zoo.fluxion as fl
from zoo.fluxion.layers.weighted import Device, DType
from zoo.foundationals.segment_anything.layers import LayerNorm2d

# -- config -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageEncoderConfig:
    """Architecture of the image encoder (defaults: ViT-B, as in `sam_vit_b_01ec64.pth`).

    Attributes:
        image_size: Side of the square input the absolute positions were learned for.
        patch_size: Side of a patch (the stride of the patch embedding).
        in_channels: Channels of the input image.
        embed_dim: Width of the transformer.
        depth: Transformer blocks.
        num_heads: Attention heads per block.
        mlp_dim: Hidden width of each block's feed-forward layer.
        window_size: Side of the attention windows of the windowed blocks.
        global_attention_blocks: Indices of the blocks that attend over the whole map.
        out_channels: Channels of the embedding the neck produces.
        qkv_bias: Whether the query/key/value projection has a bias.
        layer_norm_eps: Epsilon of the blocks' layer norms.
        neck_norm_eps: Epsilon of the neck's channel-wise layer norms.
    """

    image_size: int = 1024
    patch_size: int = 16
    in_channels: int = 3
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_dim: int = 3072
    window_size: int = 14
    global_attention_blocks: tuple[int, ...] = (2, 5, 8, 11)
    out_channels: int = 256
    qkv_bias: bool = True
    layer_norm_eps: float = 1e-6
    neck_norm_eps: float = 1e-6

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise ValueError(
                f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}"
            )
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not a multiple of num_heads {self.num_heads}")
        outside = [index for index in self.global_attention_blocks if not 0 <= index < self.depth]
        if outside:
            raise ValueError(
                f"global_attention_blocks {outside} are not blocks of a depth-{self.depth} encoder"
            )
        if self.window_size < 1:
            raise ValueError(f"window_size must be at least 1, got {self.window_size}")

    @property
    def grid_size(self) -> int:
        """Patches per side of the embedding (64 for SAM)."""
        return self.image_size // self.patch_size

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    def block_window(self, index: int) -> int:
        """The window size of block `index`; 0 for a global-attention block."""
        return 0 if index in self.global_attention_blocks else self.window_size

    @classmethod
    def vit_b(cls) -> ImageEncoderConfig:
        """SAM ViT-B: 89.7 M parameters."""
        return cls()

    @classmethod
    def vit_l(cls) -> ImageEncoderConfig:
        """SAM ViT-L: 308.3 M parameters."""
        return cls(
            embed_dim=1024, depth=24, num_heads=16, mlp_dim=4096, global_attention_blocks=(5, 11, 17, 23)
        )

    @classmethod
    def vit_h(cls) -> ImageEncoderConfig:
        """SAM ViT-H: 637.0 M parameters."""
        return cls(
            embed_dim=1280, depth=32, num_heads=16, mlp_dim=5120, global_attention_blocks=(7, 15, 23, 31)
        )

    @classmethod
    def tiny(cls) -> ImageEncoderConfig:
        """A test twin: 96-pixel images (6×6 patches, padded to 8×8 for 4×4 windows), 4 blocks, 2 global."""
        return cls(
            image_size=96,
            embed_dim=32,
            depth=4,
            num_heads=2,
            mlp_dim=64,
            window_size=4,
            global_attention_blocks=(1, 3),
            out_channels=32,
        )


# -- relative positions -----------------------------------------------------------------------------


def relative_position_table(table: torch.Tensor, size: int) -> torch.Tensor:
    """(2·size − 1, C) learned table → (size, size, C): the embedding of (query − key) per position pair.

    A table learned for another size is resized linearly first, as upstream does.
    """
    length = 2 * size - 1
    if table.shape[0] != length:
        resized = F.interpolate(table.t()[None], size=length, mode="linear")
        table = resized[0].t()
    positions = torch.arange(size, device=table.device)
    return table[positions[:, None] - positions[None, :] + size - 1]


class RelativePositions(fl.WeightedModule):
    """The decomposed relative position tables of one attention (one per axis).

    Called on the (B, H, W, C) map the attention reads, it returns the (H, H, head_dim) and
    (W, W, head_dim) embeddings of every query-key offset along each axis.
    """

    def __init__(self, size: int, head_dim: int, device: Device = None, dtype: DType = None) -> None:
        super().__init__()
        self.size, self.head_dim = size, head_dim
        self.rel_pos_h = torch.nn.Parameter(torch.zeros(2 * size - 1, head_dim, device=device, dtype=dtype))
        self.rel_pos_w = torch.nn.Parameter(torch.zeros(2 * size - 1, head_dim, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        height, width = x.shape[1], x.shape[2]
        return relative_position_table(self.rel_pos_h, height), relative_position_table(self.rel_pos_w, width)

    def extra_repr(self) -> str:
        return f"size={self.size}, head_dim={self.head_dim}"


class DecomposedAttention(fl.ContextModule):
    """Multi-head attention over a (B, H, W, 3·C) fused projection, biased by relative positions.

    The bias of query (y, x) for key (y', x') is q·Rh[y, y'] + q·Rw[x, x'] (MViTv2's decomposition),
    computed from the unscaled query.
    """

    def __init__(self, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads

    def forward(self, tables: tuple[torch.Tensor, torch.Tensor], qkv: torch.Tensor) -> torch.Tensor:
        batch, height, width, fused = qkv.shape
        heads = self.num_heads
        q, k, v = qkv.reshape(batch, height * width, 3, heads, fused // (3 * heads)).permute(2, 0, 3, 1, 4)
        bias = self._bias(q.reshape(batch * heads, height, width, -1), *tables)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.reshape(batch, heads, *bias.shape[1:]))
        return out.permute(0, 2, 1, 3).reshape(batch, height, width, -1)

    @staticmethod
    def _bias(query: torch.Tensor, rel_h: torch.Tensor, rel_w: torch.Tensor) -> torch.Tensor:
        """(N, H, W, D) queries → (N, H·W, H·W) additive attention bias."""
        along_h = torch.einsum("bhwc,hkc->bhwk", query, rel_h)
        along_w = torch.einsum("bhwc,wkc->bhwk", query, rel_w)
        bias = along_h[:, :, :, :, None] + along_w[:, :, :, None, :]
        count, height, width = query.shape[:3]
        return bias.reshape(count, height * width, height * width)

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}"


class RelativePositionAttention(fl.Chain):
    """Self-attention over a (B, H, W, C) map: relative position tables, fused qkv, attention, projection."""

    def __init__(
        self, config: ImageEncoderConfig, size: int, device: Device = None, dtype: DType = None
    ) -> None:
        width = config.embed_dim
        super().__init__(
            fl.Parallel(
                RelativePositions(size, config.head_dim, device=device, dtype=dtype),
                fl.Linear(width, 3 * width, bias=config.qkv_bias, device=device, dtype=dtype),
            ),
            DecomposedAttention(config.num_heads),
            fl.Linear(width, width, device=device, dtype=dtype),
        )


# -- blocks -----------------------------------------------------------------------------------------


class Windowed(fl.Chain):
    """Runs its children on each (window × window) tile of a (B, H, W, C) map, padded on the bottom and
    right to whole windows; the padding is dropped afterwards."""

    def __init__(self, window_size: int, *modules: torch.nn.Module) -> None:
        self.window_size = window_size
        super().__init__(*modules)

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        x = args[0]
        batch, height, width, channels = x.shape
        size = self.window_size
        padded = F.pad(x, (0, 0, 0, -width % size, 0, -height % size))
        rows, columns = padded.shape[1] // size, padded.shape[2] // size
        tiles = padded.reshape(batch, rows, size, columns, size, channels).permute(0, 1, 3, 2, 4, 5)
        out = super().forward(tiles.reshape(-1, size, size, channels))
        out = out.reshape(batch, rows, columns, size, size, -1).permute(0, 1, 3, 2, 4, 5)
        return out.reshape(batch, rows * size, columns * size, -1)[:, :height, :width]

    def extra_repr(self) -> str:
        return f"window_size={self.window_size}"


class AttentionBlock(fl.Residual):
    """x + attention(layer norm(x)), within windows or over the whole map."""

    def __init__(
        self, config: ImageEncoderConfig, window_size: int, device: Device = None, dtype: DType = None
    ) -> None:
        size = window_size or config.grid_size
        attention = RelativePositionAttention(config, size, device=device, dtype=dtype)
        super().__init__(
            fl.LayerNorm(config.embed_dim, eps=config.layer_norm_eps, device=device, dtype=dtype),
            Windowed(window_size, attention) if window_size else attention,
        )


class FeedForwardBlock(fl.Residual):
    """x + lin2(gelu(lin1(layer norm(x))))."""

    def __init__(self, config: ImageEncoderConfig, device: Device = None, dtype: DType = None) -> None:
        super().__init__(
            fl.LayerNorm(config.embed_dim, eps=config.layer_norm_eps, device=device, dtype=dtype),
            fl.Linear(config.embed_dim, config.mlp_dim, device=device, dtype=dtype),
            fl.GeLU(),
            fl.Linear(config.mlp_dim, config.embed_dim, device=device, dtype=dtype),
        )


class EncoderBlock(fl.Chain):
    """A pre-norm transformer block; `window_size` 0 means global attention."""

    def __init__(
        self, config: ImageEncoderConfig, window_size: int, device: Device = None, dtype: DType = None
    ) -> None:
        self.window_size = window_size
        super().__init__(
            AttentionBlock(config, window_size, device=device, dtype=dtype),
            FeedForwardBlock(config, device=device, dtype=dtype),
        )

    def extra_repr(self) -> str:
        return f"window_size={self.window_size}"


class PositionEmbedding(fl.Parameter):
    """The absolute position embedding, channels last: (1, grid, grid, embed_dim)."""


class PatchEmbedding(fl.Chain):
    """(B, C, S, S) image → (B, S/p, S/p, embed_dim) patch embeddings (a stride-p convolution)."""

    def __init__(self, config: ImageEncoderConfig, device: Device = None, dtype: DType = None) -> None:
        size = config.patch_size
        super().__init__(
            fl.Conv2d(config.in_channels, config.embed_dim, size, stride=size, device=device, dtype=dtype),
            fl.Permute(0, 2, 3, 1),
        )


class Embeddings(fl.Sum):
    """Absolute positions plus patch embeddings (positions first: upstream's encoder holds them and
    runs before its patch embedding)."""

    def __init__(self, config: ImageEncoderConfig, device: Device = None, dtype: DType = None) -> None:
        grid = config.grid_size
        super().__init__(
            PositionEmbedding(1, grid, grid, config.embed_dim, device=device, dtype=dtype),
            PatchEmbedding(config, device=device, dtype=dtype),
        )


class Transformer(fl.Chain):
    """The encoder blocks, in order."""

    def __init__(self, config: ImageEncoderConfig, device: Device = None, dtype: DType = None) -> None:
        super().__init__(
            EncoderBlock(config, config.block_window(index), device=device, dtype=dtype)
            for index in range(config.depth)
        )


class Neck(fl.Chain):
    """(B, H, W, embed_dim) → (B, out_channels, H, W): 1×1 conv, norm, 3×3 conv, norm (no biases)."""

    def __init__(self, config: ImageEncoderConfig, device: Device = None, dtype: DType = None) -> None:
        out, eps = config.out_channels, config.neck_norm_eps
        super().__init__(
            fl.Permute(0, 3, 1, 2),
            fl.Conv2d(config.embed_dim, out, 1, bias=False, device=device, dtype=dtype),
            LayerNorm2d(out, eps=eps, device=device, dtype=dtype),
            fl.Conv2d(out, out, 3, padding=1, bias=False, device=device, dtype=dtype),
            LayerNorm2d(out, eps=eps, device=device, dtype=dtype),
        )


# -- model ------------------------------------------------------------------------------------------


class ImageEncoder(fl.Chain):
    """Normalised, padded (B, 3, S, S) images → (B, out_channels, S/p, S/p) image embeddings.

    Example:
        >>> import torch
        >>> encoder = ImageEncoder(ImageEncoderConfig.tiny())
        >>> encoder(torch.randn(1, 3, 96, 96)).shape
        torch.Size([1, 32, 6, 6])
    """

    def __init__(self, config: ImageEncoderConfig, device: Device = None, dtype: DType = None) -> None:
        self.config = config
        super().__init__(
            Embeddings(config, device=device, dtype=dtype),
            Transformer(config, device=device, dtype=dtype),
            Neck(config, device=device, dtype=dtype),
        )

    @property
    def blocks(self) -> list[EncoderBlock]:
        """The transformer blocks, in order (adapters may wrap them: these are the blocks themselves)."""
        return list(self.layer("Transformer", Transformer).layers(EncoderBlock))


__all__ = [
    "AttentionBlock",
    "DecomposedAttention",
    "EncoderBlock",
    "FeedForwardBlock",
    "ImageEncoder",
    "ImageEncoderConfig",
    "Neck",
    "PatchEmbedding",
    "PositionEmbedding",
    "RelativePositionAttention",
    "RelativePositions",
    "Transformer",
    "Windowed",
    "relative_position_table",
]

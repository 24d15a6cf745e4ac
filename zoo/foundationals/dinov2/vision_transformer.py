"""DINOv2: self-supervised vision transformer backbones, with and without register tokens.

Papers: Oquab et al., "DINOv2: Learning Robust Visual Features without Supervision" (2023,
https://arxiv.org/abs/2304.07193); Darcet et al., "Vision Transformers Need Registers" (2023,
https://arxiv.org/abs/2309.16588).
Upstream: https://github.com/facebookresearch/dinov2; the layer order followed here is transformers'
`Dinov2Model` / `Dinov2WithRegistersModel`. Weights: Apache-2.0.

An image becomes one token per 14 × 14 patch; a class token, position embeddings and (optionally)
register tokens are added, then pre-norm transformer layers with layer scale run, and a final norm:

    image ─► PatchEmbedding ─► MaskToken ─► ClassToken ─► PositionEmbedding ─► Registers
          ─► TransformerLayer × N ─► LayerNorm ─► [class, registers × R, patches × h·w]

The released sizes are presets of one config: ViT-S/14, B/14, L/14 and g/14 (whose feed-forward is a
SwiGLU), each with 0 or 4 registers. `DINOv2.encode` returns the class, register and patch tokens,
and the outputs of any layers asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import ClassVar, Literal

import torch
from torch import nn

import zoo.fluxion as fl
from zoo.fluxion.layers.weighted import Device, DType
from zoo.foundationals.dinov2.position_embedding import IMAGE_KEY, PositionEmbedding
from zoo.foundationals.dinov2.tokens import MASK_KEY, ClassToken, MaskToken, Registers

FeedForwardKind = Literal["mlp", "swiglu"]
RELEASE_REGISTERS = 4  # the `_reg4` releases
RELEASE_HEAD_SIZE = 64  # every release: heads = hidden_size / 64
ORIGINAL_INTERPOLATE_OFFSET = 0.1  # the original code's, for its models without registers


@dataclass(frozen=True)
class DINOv2Config:
    """Architecture of a DINOv2 backbone (defaults: ViT-B/14 as transformers runs it).

    Attributes:
        image_size: Training image side; the position embeddings cover its patch grid.
        patch_size: Side of the square patches (14 for every release).
        in_channels: Image channels.
        hidden_size: Width of the tokens.
        num_layers: Transformer layers.
        num_heads: Attention heads per layer.
        feedforward: `mlp` (linear, GELU, linear) or `swiglu` (ViT-g/14).
        feedforward_size: Hidden width of the feed-forward (of each SwiGLU branch).
        num_registers: Register tokens (0 or 4 in the releases).
        layer_norm_eps: Epsilon of every layer norm.
        interpolate_offset: How position embeddings are resized for other image sizes: 0 to the
            target grid; else by the scale factor (grid + offset) / trained grid, as the original code
            does for its models without registers (0.1). See `position_embedding`.
        interpolate_antialias: Whether that resize is antialiased (models with registers, timm).
    """

    image_size: int = 518
    patch_size: int = 14
    in_channels: int = 3
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    feedforward: FeedForwardKind = "mlp"
    feedforward_size: int = 3072
    num_registers: int = 0
    layer_norm_eps: float = 1e-6
    interpolate_offset: float = 0.0
    interpolate_antialias: bool = False

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not a multiple of num_heads {self.num_heads}"
            )
        if self.image_size % self.patch_size:
            raise ValueError(
                f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}"
            )
        if self.num_layers < 1 or self.num_registers < 0 or self.interpolate_offset < 0:
            raise ValueError("num_layers must be positive, num_registers and interpolate_offset not negative")

    @property
    def grid_side(self) -> int:
        """Patches per side of the trained position grid."""
        return self.image_size // self.patch_size

    @classmethod
    def vits14(cls, registers: bool = False) -> DINOv2Config:
        """ViT-S/14: 22 M parameters."""
        return cls(hidden_size=384, num_heads=6, feedforward_size=1536).with_registers(registers)

    @classmethod
    def vitb14(cls, registers: bool = False) -> DINOv2Config:
        """ViT-B/14: 87 M parameters."""
        return cls().with_registers(registers)

    @classmethod
    def vitl14(cls, registers: bool = False) -> DINOv2Config:
        """ViT-L/14: 304 M parameters."""
        return cls(hidden_size=1024, num_layers=24, num_heads=16, feedforward_size=4096).with_registers(
            registers
        )

    @classmethod
    def vitg14(cls, registers: bool = False) -> DINOv2Config:
        """ViT-g/14 with its SwiGLU feed-forward: 1.1 B parameters."""
        return cls(
            hidden_size=1536, num_layers=40, num_heads=24, feedforward="swiglu", feedforward_size=4096
        ).with_registers(registers)

    @classmethod
    def tiny(cls, registers: bool = False, feedforward: FeedForwardKind = "mlp") -> DINOv2Config:
        """A test twin: 56-pixel images (a 4 × 4 grid), two layers of two 64-wide heads."""
        size = 344 if feedforward == "swiglu" else 512
        return cls(
            image_size=56,
            hidden_size=128,
            num_layers=2,
            num_heads=2,
            feedforward=feedforward,
            feedforward_size=size,
        ).with_registers(registers)

    def with_registers(self, registers: bool) -> DINOv2Config:
        """The release with 4 registers (antialiased interpolation, as all its references), or as is."""
        if not registers:
            return self
        return replace(self, num_registers=RELEASE_REGISTERS, interpolate_antialias=True)

    def with_original_interpolation(self) -> DINOv2Config:
        """Position embeddings resized as the original code resizes them for this kind of model."""
        if self.num_registers:
            return replace(self, interpolate_offset=0.0, interpolate_antialias=True)
        return replace(self, interpolate_offset=ORIGINAL_INTERPOLATE_OFFSET, interpolate_antialias=False)


@dataclass(frozen=True)
class DINOv2Output:
    """What `DINOv2.encode` returns.

    Attributes:
        class_token: (B, D) class token after the final norm (transformers' `pooler_output`).
        register_tokens: (B, R, D) register tokens after the final norm (R may be 0).
        patch_tokens: (B, h·w, D) patch tokens after the final norm, row by row.
        grid_size: (h, w): patches per column and per row.
        layers: (B, 1 + R + h·w, D) outputs of the layers asked for, in that order, before the final
            norm (transformers' `hidden_states[i + 1]` for layer i).
    """

    class_token: torch.Tensor
    register_tokens: torch.Tensor
    patch_tokens: torch.Tensor
    grid_size: tuple[int, int]
    layers: tuple[torch.Tensor, ...] = ()

    def patch_grid(self) -> torch.Tensor:
        """The patch tokens as a (B, D, h, w) feature map."""
        return self.patch_tokens.transpose(1, 2).unflatten(2, self.grid_size)


# -- embeddings -------------------------------------------------------------------------------------


class PatchEmbedding(fl.Chain):
    """(B, C, H, W) image → (B, h·w, D) patch tokens: a patch-strided convolution, flattened row by row."""

    def __init__(self, config: DINOv2Config, device: Device = None, dtype: DType = None) -> None:
        patch = config.patch_size
        super().__init__(
            fl.Conv2d(
                config.in_channels, config.hidden_size, patch, stride=patch, device=device, dtype=dtype
            ),
            fl.Flatten(2),
            fl.Transpose(1, 2),
        )


class Embeddings(fl.Chain):
    """(B, C, H, W) image → (B, 1 + R + h·w, D) tokens: class, registers, then patches."""

    def __init__(
        self, config: DINOv2Config, context: str, device: Device = None, dtype: DType = None
    ) -> None:
        registers = (
            [Registers(config.num_registers, config.hidden_size, device=device, dtype=dtype)]
            if config.num_registers
            else []
        )
        super().__init__(
            fl.SetContext(context, IMAGE_KEY),
            PatchEmbedding(config, device=device, dtype=dtype),
            MaskToken(config.hidden_size, context, device=device, dtype=dtype),
            ClassToken(config.hidden_size, device=device, dtype=dtype),
            PositionEmbedding(
                config.grid_side,
                config.hidden_size,
                config.patch_size,
                context,
                config.interpolate_offset,
                config.interpolate_antialias,
                device=device,
                dtype=dtype,
            ),
            *registers,
        )


# -- transformer ------------------------------------------------------------------------------------


class LayerScale(fl.WeightedModule):
    """Scales each channel by a learned factor (the residual branch's weight)."""

    def __init__(self, hidden_size: int, device: Device = None, dtype: DType = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight


class AttentionBlock(fl.Residual):
    """x + layer scale(self-attention(layer norm(x)))."""

    def __init__(self, config: DINOv2Config, device: Device = None, dtype: DType = None) -> None:
        super().__init__(
            fl.LayerNorm(config.hidden_size, eps=config.layer_norm_eps, device=device, dtype=dtype),
            fl.SelfAttention(config.hidden_size, num_heads=config.num_heads, device=device, dtype=dtype),
            LayerScale(config.hidden_size, device=device, dtype=dtype),
        )


class FeedForward(fl.Chain):
    """linear, GELU, linear."""

    def __init__(self, config: DINOv2Config, device: Device = None, dtype: DType = None) -> None:
        super().__init__(
            fl.Linear(config.hidden_size, config.feedforward_size, device=device, dtype=dtype),
            fl.GeLU(),
            fl.Linear(config.feedforward_size, config.hidden_size, device=device, dtype=dtype),
        )


class Product(fl.ContextModule):
    """The elementwise product of its two inputs."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a * b


class Gate(fl.Chain):
    """SiLU(linear(x)): the gating branch of a SwiGLU."""

    def __init__(self, config: DINOv2Config, device: Device = None, dtype: DType = None) -> None:
        super().__init__(
            fl.Linear(config.hidden_size, config.feedforward_size, device=device, dtype=dtype), fl.SiLU()
        )


class SwiGLUFeedForward(fl.Chain):
    """down(SiLU(gate(x)) · up(x)), the feed-forward of ViT-g/14."""

    def __init__(self, config: DINOv2Config, device: Device = None, dtype: DType = None) -> None:
        super().__init__(
            fl.Parallel(
                Gate(config, device=device, dtype=dtype),
                fl.Linear(config.hidden_size, config.feedforward_size, device=device, dtype=dtype),
            ),
            Product(),
            fl.Linear(config.feedforward_size, config.hidden_size, device=device, dtype=dtype),
        )


class FeedForwardBlock(fl.Residual):
    """x + layer scale(feed-forward(layer norm(x)))."""

    def __init__(self, config: DINOv2Config, device: Device = None, dtype: DType = None) -> None:
        feedforward = SwiGLUFeedForward if config.feedforward == "swiglu" else FeedForward
        super().__init__(
            fl.LayerNorm(config.hidden_size, eps=config.layer_norm_eps, device=device, dtype=dtype),
            feedforward(config, device=device, dtype=dtype),
            LayerScale(config.hidden_size, device=device, dtype=dtype),
        )


class TransformerLayer(fl.Chain):
    """A pre-norm transformer layer: attention block, then feed-forward block."""

    def __init__(self, config: DINOv2Config, device: Device = None, dtype: DType = None) -> None:
        super().__init__(
            AttentionBlock(config, device=device, dtype=dtype),
            FeedForwardBlock(config, device=device, dtype=dtype),
        )


class Transformer(fl.Chain):
    """The transformer layers, in order."""

    def __init__(self, config: DINOv2Config, device: Device = None, dtype: DType = None) -> None:
        super().__init__(
            TransformerLayer(config, device=device, dtype=dtype) for _ in range(config.num_layers)
        )


# -- the backbone -----------------------------------------------------------------------------------


class DINOv2(fl.Chain):
    """DINOv2 backbone: (B, C, H, W) image → (B, 1 + R + h·w, D) tokens after the final norm.

    H and W need not be the training size: the position embeddings are resized (see the config's
    `interpolate_*` fields); pixels beyond the last whole patch are not seen.

    Example:
        >>> model = DINOv2(DINOv2Config.tiny(registers=True))
        >>> model(torch.randn(1, 3, 56, 84)).shape  # class, 4 registers, 4 × 6 patches
        torch.Size([1, 29, 128])
        >>> model.encode(torch.randn(1, 3, 56, 56), layers=(0,)).patch_grid().shape
        torch.Size([1, 128, 4, 4])
    """

    context_name: ClassVar[str] = "dino"

    def __init__(self, config: DINOv2Config, device: Device = None, dtype: DType = None) -> None:
        self.config = config
        super().__init__(
            Embeddings(config, self.context_name, device=device, dtype=dtype),
            Transformer(config, device=device, dtype=dtype),
            fl.LayerNorm(config.hidden_size, eps=config.layer_norm_eps, device=device, dtype=dtype),
        )

    def encode(
        self, image: torch.Tensor, layers: Sequence[int] = (), patch_mask: torch.Tensor | None = None
    ) -> DINOv2Output:
        """Run once; return the class, register and patch tokens, and the outputs of `layers`.

        Args:
            image: (B, C, H, W), normalised as the model was trained (see `preprocessing`).
            layers: Indices of the layers whose outputs to return (0 is the first, -1 the last).
            patch_mask: (B, h·w) booleans: patches replaced by the mask token (masked-image modelling).
        """
        count = self.config.num_layers
        if any(not -count <= index < count for index in layers):
            raise IndexError(f"layers {tuple(layers)}: the model has {count} layers")
        self.set_context(self.context_name, {MASK_KEY: patch_mask})
        tokens = self.Embeddings(image)
        wanted = {index % count for index in layers}
        kept: dict[int, torch.Tensor] = {}
        for index, layer in enumerate(self.Transformer):
            tokens = layer(tokens)
            if index in wanted:
                kept[index] = tokens
        outputs = tuple(kept[index % count] for index in layers)
        return self._output(self.LayerNorm(tokens), image, outputs)

    def _output(
        self, tokens: torch.Tensor, image: torch.Tensor, layers: tuple[torch.Tensor, ...]
    ) -> DINOv2Output:
        start = 1 + self.config.num_registers
        patch = self.config.patch_size
        return DINOv2Output(
            class_token=tokens[:, 0],
            register_tokens=tokens[:, 1:start],
            patch_tokens=tokens[:, start:],
            grid_size=(image.shape[-2] // patch, image.shape[-1] // patch),
            layers=layers,
        )


__all__ = [
    "AttentionBlock",
    "DINOv2",
    "DINOv2Config",
    "DINOv2Output",
    "Embeddings",
    "FeedForward",
    "FeedForwardBlock",
    "Gate",
    "LayerScale",
    "PatchEmbedding",
    "Product",
    "SwiGLUFeedForward",
    "Transformer",
    "TransformerLayer",
]

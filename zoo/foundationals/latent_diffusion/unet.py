"""The latent diffusion UNet of Stable Diffusion 1.5 and SDXL, one config-driven chain.

Paper: Rombach et al., "High-Resolution Image Synthesis with Latent Diffusion Models" (CVPR 2022),
https://arxiv.org/abs/2112.10752; SDXL: Podell et al., "SDXL: Improving Latent Diffusion Models for
High-Resolution Image Synthesis" (2023), https://arxiv.org/abs/2307.01952 (section 2.1 and 2.2 for the
added size and crop conditioning).
Upstream: https://github.com/CompVis/latent-diffusion and https://github.com/Stability-AI/generative-models
(original), and the diffusers `UNet2DConditionModel` (`diffusers/models/unets/unet_2d_condition.py`,
`unet_2d_blocks.py`, `resnet.py`, `transformers/transformer_2d.py`, `attention.py`), whose execution
order this model follows so that weights can be converted by key tracing.
Weights: SD 1.5 under the CreativeML OpenRAIL-M licence; SDXL base 1.0 under the CreativeML Open
RAIL++-M licence.

How it runs: the conditioning reaches the layers through the `"unet"` context rather than through
arguments. Set it with `set_timestep`, `set_clip_text_embedding` and, for SDXL, `set_pooled_text_embedding`
and `set_time_ids`, then call the model on the latents (or call `denoise`, which does both). The
`TimestepEncoder` turns the timestep (and SDXL's pooled text and size/crop ids) into one embedding that
every `ResnetBlock` reads; every `SpatialTransformer` reads the text embedding; every step of
`DownBlocks` stores its output as a skip (`skip_0`, `skip_1`, ...) that one step of `UpBlocks`
concatenates back. The building blocks live beside this file: `unet_timestep.py` (the timestep
embedding), `unet_resnet.py` (resnet blocks) and `unet_transformer.py` (spatial transformers).

Example:
    >>> import torch
    >>> unet = UNet(UNetConfig.tiny_sd15())
    >>> text = torch.zeros(1, 7, UNetConfig.tiny_sd15().cross_attention_dim)
    >>> unet.denoise(torch.zeros(1, 4, 16, 16), timestep=999, text_embedding=text).shape
    torch.Size([1, 4, 16, 16])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch.nn import functional as F

import zoo.fluxion as fl
from zoo.fluxion.layers.weighted import Device, DType
from zoo.foundationals.latent_diffusion.unet_context import CONTEXT
from zoo.foundationals.latent_diffusion.unet_resnet import ResnetBlock
from zoo.foundationals.latent_diffusion.unet_timestep import (
    TextTimeEmbedding,
    TimestepEmbedding,
    TimestepEncoder,
    sinusoidal_embedding,
)
from zoo.foundationals.latent_diffusion.unet_transformer import (
    CrossAttention,
    CrossAttentionBlock,
    FeedForwardBlock,
    SelfAttentionBlock,
    SpatialTransformer,
    TransformerLayer,
)

Timestep = torch.Tensor | int | float

# -- config -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of the UNet; defaults are SDXL base 1.0's.

    Per-level tuples list the levels of the down path, highest resolution first; the up path mirrors
    them, and the middle block uses the values of the last level (as upstream does).

    Attributes:
        in_channels: Channels of the latents read.
        out_channels: Channels of the prediction written.
        block_channels: Channels of each level; every level but the last halves the resolution.
        cross_attention_levels: Whether each level has a spatial transformer after each resnet (the
            middle block always has one).
        layers_per_block: Resnets per down level; up levels have one more.
        transformer_depth: Transformer layers of each spatial transformer, per level (upstream's
            `transformer_layers_per_block`).
        num_heads: Number of attention heads, per level. Upstream's config calls this
            `attention_head_dim` (a legacy misnomer, kept for compatibility); the size of a head is
            `channels // num_heads` (64 for SDXL, 40 to 160 for SD 1.5).
        cross_attention_dim: Width of the text embedding the cross-attentions read.
        use_linear_projection: Whether a spatial transformer projects in and out with Linear layers
            (SDXL) or with 1×1 convolutions (SD 1.5).
        norm_groups: Groups of every group normalisation.
        norm_eps: Epsilon of the resnets' and the output's group normalisations.
        transformer_norm_eps: Epsilon of the group normalisation at the input of each spatial
            transformer (fixed upstream, not in its config).
        layer_norm_eps: Epsilon of the layer normalisations inside transformer layers.
        feedforward_multiplier: Hidden width of a transformer layer's GEGLU feed-forward, in channels.
        time_embedding_dim: Width of the timestep embedding (upstream: 4 × `block_channels[0]`).
        flip_sin_to_cos: Whether sinusoidal embeddings are laid out (cos, sin) rather than (sin, cos).
        freq_shift: Shift of the sinusoidal frequencies (upstream's `freq_shift`).
        time_cond_proj_dim: Width of an extra timestep condition projected into the sinusoidal
            timestep embedding (LCM's guidance embedding); None for none.
        addition_embed_type: "text_time" for SDXL's added conditioning (pooled text embedding and
            size/crop ids, embedded and added to the timestep embedding); None for none.
        addition_time_embed_dim: Width of the sinusoidal embedding of each SDXL time id (256).
        addition_embed_input_dim: Width of the pooled text embedding plus all embedded time ids, the
            input of the added embedding (upstream's `projection_class_embeddings_input_dim`; 2816 =
            1280 + 6 × 256 for SDXL).
        upcast_attention: Upstream computes some attentions in float32 (SD 2.1); not supported here,
            so it must be False.
        sample_size: The latent size (per side) the model was trained at, upstream's `sample_size`
            (128 for SDXL, 64 for SD 1.5): images default to it times the autoencoder's downscale. It
            changes no weight; None when unknown.
    """

    in_channels: int = 4
    out_channels: int = 4
    block_channels: tuple[int, ...] = (320, 640, 1280)
    cross_attention_levels: tuple[bool, ...] = (False, True, True)
    layers_per_block: int = 2
    transformer_depth: tuple[int, ...] = (1, 2, 10)
    num_heads: tuple[int, ...] = (5, 10, 20)
    cross_attention_dim: int = 2048
    use_linear_projection: bool = True
    norm_groups: int = 32
    norm_eps: float = 1e-5
    transformer_norm_eps: float = 1e-6
    layer_norm_eps: float = 1e-5
    feedforward_multiplier: int = 4
    time_embedding_dim: int = 1280
    flip_sin_to_cos: bool = True
    freq_shift: float = 0
    time_cond_proj_dim: int | None = None
    addition_embed_type: Literal["text_time"] | None = "text_time"
    addition_time_embed_dim: int | None = 256
    addition_embed_input_dim: int | None = 2816
    upcast_attention: bool = False
    sample_size: int | None = None

    def __post_init__(self) -> None:
        levels = len(self.block_channels)
        if levels == 0:
            raise ValueError("block_channels is empty: the UNet needs at least one level")
        per_level = {
            "cross_attention_levels": self.cross_attention_levels,
            "transformer_depth": self.transformer_depth,
            "num_heads": self.num_heads,
        }
        for name, values in per_level.items():
            if len(values) != levels:
                raise ValueError(f"{name} has {len(values)} values for {levels} levels: {values}")
        if self.layers_per_block < 1:
            raise ValueError(f"layers_per_block is {self.layers_per_block}: at least 1 is needed")
        if self.upcast_attention:
            raise ValueError("upcast_attention=True (float32 attention, SD 2.1) is not supported")
        self._check_divisibility()
        self._check_added_conditioning()

    def _check_divisibility(self) -> None:
        for channels, heads in zip(self.block_channels, self.num_heads, strict=True):
            if channels % self.norm_groups:
                raise ValueError(
                    f"block_channels {channels} is not divisible by norm_groups {self.norm_groups}"
                )
            if channels % heads:
                raise ValueError(f"block_channels {channels} is not divisible by num_heads {heads}")

    def _check_added_conditioning(self) -> None:
        if self.addition_embed_type is None:
            return
        if self.addition_embed_type != "text_time":
            raise ValueError(f"addition_embed_type {self.addition_embed_type!r} is not supported")
        if self.addition_time_embed_dim is None or self.addition_embed_input_dim is None:
            raise ValueError(
                "addition_embed_type='text_time' needs addition_time_embed_dim and addition_embed_input_dim"
            )

    @classmethod
    def sdxl(cls) -> UNetConfig:
        """SDXL base 1.0 (2.57 B parameters)."""
        return cls(sample_size=128)

    @classmethod
    def sd15(cls) -> UNetConfig:
        """Stable Diffusion 1.5 (860 M parameters)."""
        return cls(
            block_channels=(320, 640, 1280, 1280),
            cross_attention_levels=(True, True, True, False),
            transformer_depth=(1, 1, 1, 1),
            num_heads=(8, 8, 8, 8),
            cross_attention_dim=768,
            use_linear_projection=False,
            addition_embed_type=None,
            addition_time_embed_dim=None,
            addition_embed_input_dim=None,
            sample_size=64,
        )

    @classmethod
    def tiny_sdxl(cls) -> UNetConfig:
        """SDXL's flavour for tests: linear projections, added text/time conditioning, depth 2 in the middle."""
        return cls(
            block_channels=(32, 64),
            cross_attention_levels=(False, True),
            layers_per_block=1,
            transformer_depth=(1, 2),
            num_heads=(2, 2),
            cross_attention_dim=32,
            norm_groups=8,
            time_embedding_dim=128,
            addition_time_embed_dim=8,
            addition_embed_input_dim=32 + 6 * 8,
        )

    @classmethod
    def tiny_sd15(cls) -> UNetConfig:
        """SD 1.5's flavour for tests: 1×1 convolution projections, no added conditioning."""
        return cls(
            block_channels=(32, 64),
            cross_attention_levels=(True, False),
            layers_per_block=1,
            transformer_depth=(1, 1),
            num_heads=(2, 2),
            cross_attention_dim=32,
            use_linear_projection=False,
            norm_groups=8,
            time_embedding_dim=128,
            addition_embed_type=None,
            addition_time_embed_dim=None,
            addition_embed_input_dim=None,
        )

    @property
    def timestep_channels(self) -> int:
        """Width of the sinusoidal timestep embedding (the first level's channels, as upstream)."""
        return self.block_channels[0]

    @property
    def downscale_factor(self) -> int:
        """How much smaller the lowest resolution is than the latents', per side."""
        return 2 ** (len(self.block_channels) - 1)


# -- building blocks: down, middle, up --------------------------------------------------------------


def skip_key(index: int) -> str:
    """The context key under which step `index` of the down path stores its output."""
    return f"skip_{index}"


class SkipConnection(fl.Concatenate):
    """Concatenates (along channels) the skip that step `index` of the down path stored."""

    def __init__(self, index: int) -> None:
        super().__init__(fl.Identity(), fl.UseContext(CONTEXT, skip_key(index)), dim=1)


class InterpolateToSkip(fl.ContextModule):
    """Nearest-neighbour upsampling to the size of a stored skip (twice the size, unless it was odd)."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip: torch.Tensor = self.use_context(CONTEXT)[skip_key(self.index)]
        return F.interpolate(x, size=skip.shape[-2:], mode="nearest")

    def extra_repr(self) -> str:
        return f"index={self.index}"


class Upsample(fl.Chain):
    """Upsampling to the resolution of the skip to concatenate next, then a 3×3 convolution."""

    def __init__(self, channels: int, skip_index: int, device: Device = None, dtype: DType = None) -> None:
        super().__init__(
            InterpolateToSkip(skip_index),
            fl.Conv2d(channels, channels, 3, padding=1, device=device, dtype=dtype),
        )


class DownBlocks(fl.Chain):
    """The input convolution, then resnets (with spatial transformers) and downsamplers, level by level.

    Each child stores its output as the skip `skip_<i>`, i its 0-based position.
    """

    def __init__(self, config: UNetConfig, device: Device = None, dtype: DType = None) -> None:
        self.skip_channels: list[int] = []

        def step(*blocks: torch.nn.Module, channels: int) -> fl.Chain:
            self.skip_channels.append(channels)
            return fl.Chain(*blocks, fl.SetContext(CONTEXT, skip_key(len(self.skip_channels) - 1)))

        first = config.block_channels[0]
        steps = [
            step(
                fl.Conv2d(config.in_channels, first, 3, padding=1, device=device, dtype=dtype), channels=first
            )
        ]
        channels, last_level = first, len(config.block_channels) - 1
        for level, out in enumerate(config.block_channels):
            for _ in range(config.layers_per_block):
                blocks: list[torch.nn.Module] = [ResnetBlock(channels, out, config, device, dtype)]
                if config.cross_attention_levels[level]:
                    depth, heads = config.transformer_depth[level], config.num_heads[level]
                    blocks.append(SpatialTransformer(out, depth, heads, config, device, dtype))
                steps.append(step(*blocks, channels=out))
                channels = out
            if level != last_level:
                steps.append(step(fl.Downsample(out, padding=1, device=device, dtype=dtype), channels=out))
        super().__init__(*steps)


class MiddleBlock(fl.Chain):
    """Resnet, spatial transformer, resnet at the lowest resolution."""

    def __init__(self, config: UNetConfig, device: Device = None, dtype: DType = None) -> None:
        channels, depth, heads = config.block_channels[-1], config.transformer_depth[-1], config.num_heads[-1]
        super().__init__(
            ResnetBlock(channels, channels, config, device, dtype),
            SpatialTransformer(channels, depth, heads, config, device, dtype),
            ResnetBlock(channels, channels, config, device, dtype),
        )


class UpBlocks(fl.Chain):
    """Level by level from the lowest resolution: skip concatenation and resnet (with spatial
    transformer), `layers_per_block + 1` times, then an upsampler (all levels but the last)."""

    def __init__(
        self, config: UNetConfig, skip_channels: list[int], device: Device = None, dtype: DType = None
    ) -> None:
        pending = list(range(len(skip_channels)))  # skips still to concatenate: a stack
        steps: list[torch.nn.Module] = []
        channels = config.block_channels[-1]
        levels = list(enumerate(config.block_channels))[::-1]
        for level, out in levels:
            for _ in range(config.layers_per_block + 1):
                skip = pending.pop()
                blocks: list[torch.nn.Module] = [
                    SkipConnection(skip),
                    ResnetBlock(channels + skip_channels[skip], out, config, device, dtype),
                ]
                if config.cross_attention_levels[level]:
                    depth, heads = config.transformer_depth[level], config.num_heads[level]
                    blocks.append(SpatialTransformer(out, depth, heads, config, device, dtype))
                steps.append(fl.Chain(*blocks))
                channels = out
            if level != 0:
                steps.append(fl.Chain(Upsample(out, pending[-1], device, dtype)))
        super().__init__(*steps)


class OutputBlock(fl.Chain):
    """Group norm, SiLU and a 3×3 convolution down to the output channels."""

    def __init__(self, config: UNetConfig, device: Device = None, dtype: DType = None) -> None:
        channels = config.block_channels[0]
        super().__init__(
            fl.GroupNorm(config.norm_groups, channels, eps=config.norm_eps, device=device, dtype=dtype),
            fl.SiLU(),
            fl.Conv2d(channels, config.out_channels, 3, padding=1, device=device, dtype=dtype),
        )


# -- the model --------------------------------------------------------------------------------------


class UNet(fl.Chain):
    """The denoising UNet: predicts the noise (or v, per the checkpoint) in latents at a timestep.

    Conditioning goes through the context (see the module docstring); `denoise` sets it and runs.
    """

    def __init__(self, config: UNetConfig | None = None, device: Device = None, dtype: DType = None) -> None:
        self.config = config or UNetConfig()
        down = DownBlocks(self.config, device, dtype)
        super().__init__(
            TimestepEncoder(self.config, device, dtype),
            down,
            MiddleBlock(self.config, device, dtype),
            UpBlocks(self.config, down.skip_channels, device, dtype),
            OutputBlock(self.config, device, dtype),
        )

    def set_timestep(self, timestep: Timestep) -> None:
        """The timestep of the next forward: a number, or a tensor with one value or one per sample."""
        self.set_context(CONTEXT, {"timestep": timestep})

    def set_clip_text_embedding(self, embedding: torch.Tensor) -> None:
        """The (B, L, cross_attention_dim) text embedding the cross-attentions read."""
        self.set_context(CONTEXT, {"clip_text_embedding": embedding})

    def set_pooled_text_embedding(self, embedding: torch.Tensor) -> None:
        """SDXL: the (B, D) pooled text embedding of the added conditioning."""
        self.set_context(CONTEXT, {"pooled_text_embedding": embedding})

    def set_time_ids(self, time_ids: torch.Tensor) -> None:
        """SDXL: the (B, 6) size and crop ids (original h, w; crop top, left; target h, w)."""
        self.set_context(CONTEXT, {"time_ids": time_ids})

    def set_timestep_condition(self, condition: torch.Tensor) -> None:
        """LCM: the (B, time_cond_proj_dim) condition (e.g. guidance embedding) added to the timestep's."""
        self.set_context(CONTEXT, {"timestep_condition": condition})

    def denoise(
        self,
        latents: torch.Tensor,
        timestep: Timestep,
        text_embedding: torch.Tensor,
        pooled: torch.Tensor | None = None,
        time_ids: torch.Tensor | None = None,
        timestep_condition: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Set the conditioning and run on `latents` (B, in_channels, H, W).

        Args:
            latents: The noisy latents.
            timestep: The timestep.
            text_embedding: The text embedding for cross-attention.
            pooled: SDXL's pooled text embedding (required with `addition_embed_type="text_time"`).
            time_ids: SDXL's size and crop ids (required with `addition_embed_type="text_time"`).
            timestep_condition: LCM's timestep condition (optional with `time_cond_proj_dim`).

        Returns:
            The prediction, shaped (B, out_channels, H, W).
        """
        self.set_timestep(timestep)
        self.set_clip_text_embedding(text_embedding)
        if pooled is not None:
            self.set_pooled_text_embedding(pooled)
        if time_ids is not None:
            self.set_time_ids(time_ids)
        if timestep_condition is not None:
            self.set_timestep_condition(timestep_condition)
        return self(latents)


__all__ = [
    "CONTEXT",
    "CrossAttention",
    "CrossAttentionBlock",
    "DownBlocks",
    "FeedForwardBlock",
    "MiddleBlock",
    "OutputBlock",
    "ResnetBlock",
    "SelfAttentionBlock",
    "SpatialTransformer",
    "TextTimeEmbedding",
    "TimestepEmbedding",
    "TimestepEncoder",
    "TransformerLayer",
    "UNet",
    "UNetConfig",
    "UpBlocks",
    "Upsample",
    "sinusoidal_embedding",
    "skip_key",
]

"""The latent diffusion autoencoder (KL-regularised VAE) of Stable Diffusion 1.x and SDXL.

Paper: Rombach et al., "High-Resolution Image Synthesis with Latent Diffusion Models" (CVPR 2022),
https://arxiv.org/abs/2112.10752 (sections 3 and 4.3.2; the latent scaling factor is in D.1).
Upstream: https://github.com/CompVis/latent-diffusion (original), and the diffusers `AutoencoderKL`
(`diffusers/models/autoencoders/autoencoder_kl.py`, `vae.py`), whose execution order this model follows
so that weights can be converted by key tracing.
Weights: SD 1.5 VAE under the CreativeML OpenRAIL-M licence; SDXL VAE under the CreativeML Open RAIL++-M
licence; `stabilityai/sd-vae-ft-mse` under MIT.

The encoder maps an image in [-1, 1] to the mean of a diagonal Gaussian over latents (8× smaller per
side for four blocks) and scales it for the diffusion model; the decoder undoes the scaling and maps
latents back to an image. Sampling from the latent distribution is left out: diffusion pipelines use
its mean.

Example:
    >>> import torch
    >>> model = LatentDiffusionAutoencoder(AutoencoderConfig.tiny())
    >>> latents = model.encode(torch.zeros(1, 3, 32, 32))
    >>> latents.shape, model.decode(latents).shape
    (torch.Size([1, 4, 16, 16]), torch.Size([1, 3, 32, 32]))
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

import zoo.fluxion as fl
from zoo.fluxion.layers.weighted import Device, DType

# -- config -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AutoencoderConfig:
    """Architecture and latent scaling of the autoencoder; defaults are SDXL's VAE.

    Attributes:
        in_channels: Channels of the images the encoder reads.
        out_channels: Channels of the images the decoder writes.
        block_channels: Channels of each resolution level, highest resolution first; every level but
            the last halves (encoder) or doubles (decoder) the resolution.
        layers_per_block: Resnet blocks per encoder level (decoder levels have one more).
        latent_channels: Channels of the latents.
        norm_groups: Groups of every group normalisation.
        eps: Epsilon of every group normalisation.
        scaling_factor: Latents are `(mean - shift_factor) * scaling_factor`, so that they have roughly
            unit variance for the diffusion model (0.18215 for SD 1.5, 0.13025 for SDXL).
        shift_factor: Subtracted from the mean before scaling; None means no shift.
        latents_mean: Per-channel means of the latent space, when the model declares its own (Playground
            v2.5 style): latents are then `(mean - latents_mean) * scaling_factor / latents_std` and
            `shift_factor` is not used. None: one scale for every channel.
        latents_std: Per-channel standard deviations, set exactly when `latents_mean` is.
        force_upcast: Whether the weights need float32 activations (upstream's flag: SDXL's VAE
            overflows in float16, a fine-tuned "fp16-fix" one does not). Informational: it does not
            change the architecture.
        use_quant_conv: Whether a 1×1 convolution follows the encoder (on mean and log-variance).
        use_post_quant_conv: Whether a 1×1 convolution precedes the decoder.
        mid_block_attention: Whether the middle blocks hold a self-attention between their resnets.
    """

    in_channels: int = 3
    out_channels: int = 3
    block_channels: tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: int = 2
    latent_channels: int = 4
    norm_groups: int = 32
    eps: float = 1e-6
    scaling_factor: float = 0.13025
    shift_factor: float | None = None
    latents_mean: tuple[float, ...] | None = None
    latents_std: tuple[float, ...] | None = None
    force_upcast: bool = True
    use_quant_conv: bool = True
    use_post_quant_conv: bool = True
    mid_block_attention: bool = True

    def __post_init__(self) -> None:
        if not self.block_channels:
            raise ValueError("block_channels is empty: the autoencoder needs at least one level")
        if self.layers_per_block < 1:
            raise ValueError(f"layers_per_block is {self.layers_per_block}: at least 1 is needed")
        uneven = [channels for channels in self.block_channels if channels % self.norm_groups]
        if uneven:
            raise ValueError(f"block_channels {uneven} are not divisible by norm_groups {self.norm_groups}")
        if self.scaling_factor == 0:
            raise ValueError("scaling_factor is 0: latents could not be decoded")
        if (self.latents_mean is None) != (self.latents_std is None):
            raise ValueError("latents_mean and latents_std come together: give both or neither")
        for name, stats in (("latents_mean", self.latents_mean), ("latents_std", self.latents_std)):
            if stats is not None and len(stats) != self.latent_channels:
                raise ValueError(f"{name} has {len(stats)} values for {self.latent_channels} latent channels")
        if self.latents_std is not None and 0 in self.latents_std:
            raise ValueError("latents_std has a 0: latents could not be decoded")

    @classmethod
    def sd15(cls) -> AutoencoderConfig:
        """Stable Diffusion 1.x's VAE (also `stabilityai/sd-vae-ft-mse`)."""
        return cls(scaling_factor=0.18215)

    @classmethod
    def sdxl(cls) -> AutoencoderConfig:
        """SDXL's VAE: the same architecture, latents scaled differently."""
        return cls(scaling_factor=0.13025)

    @classmethod
    def tiny(cls) -> AutoencoderConfig:
        """A 170 K-parameter twin for tests: two levels, one resnet per encoder level, 4 norm groups."""
        return cls(block_channels=(16, 32), layers_per_block=1, norm_groups=4)

    @property
    def downscale_factor(self) -> int:
        """How many image pixels one latent covers, per side."""
        return 2 ** (len(self.block_channels) - 1)


# -- building blocks --------------------------------------------------------------------------------


class ResnetBlock(fl.Sum):
    """Two normalised, activated 3×3 convolutions added to a shortcut (a 1×1 conv if channels change).

    The shortcut runs after the main path, as upstream's does, so that tracing sees the same order.
    """

    def __init__(
        self, in_channels: int, out_channels: int, config: AutoencoderConfig, device: Device, dtype: DType
    ) -> None:
        groups, eps = config.norm_groups, config.eps
        super().__init__(
            fl.Chain(
                fl.GroupNorm(groups, in_channels, eps=eps, device=device, dtype=dtype),
                fl.SiLU(),
                fl.Conv2d(in_channels, out_channels, 3, padding=1, device=device, dtype=dtype),
                fl.GroupNorm(groups, out_channels, eps=eps, device=device, dtype=dtype),
                fl.SiLU(),
                fl.Conv2d(out_channels, out_channels, 3, padding=1, device=device, dtype=dtype),
            ),
            fl.Identity()
            if in_channels == out_channels
            else fl.Conv2d(in_channels, out_channels, 1, device=device, dtype=dtype),
        )


class AsSequence(fl.Chain):
    """Runs its children on the (B, H·W, C) sequence of pixels of a (B, C, H, W) map, returns a map."""

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        x = args[0]
        batch, _, height, width = x.shape
        out = super().forward(x.flatten(2).transpose(1, 2))
        return out.transpose(1, 2).reshape(batch, -1, height, width)


class SelfAttention2d(fl.Residual):
    """Single-head self-attention between all pixels of a group-normalised map, added to its input."""

    def __init__(self, channels: int, config: AutoencoderConfig, device: Device, dtype: DType) -> None:
        super().__init__(
            fl.GroupNorm(config.norm_groups, channels, eps=config.eps, device=device, dtype=dtype),
            AsSequence(fl.SelfAttention(channels, num_heads=1, device=device, dtype=dtype)),
        )


class MidBlock(fl.Chain):
    """At the lowest resolution: a resnet, a self-attention over all pixels, a resnet."""

    def __init__(self, config: AutoencoderConfig, device: Device, dtype: DType) -> None:
        channels = config.block_channels[-1]
        attention = [SelfAttention2d(channels, config, device, dtype)] if config.mid_block_attention else []
        super().__init__(
            ResnetBlock(channels, channels, config, device, dtype),
            *attention,
            ResnetBlock(channels, channels, config, device, dtype),
        )


class OutputBlock(fl.Chain):
    """Group norm, SiLU, then a 3×3 convolution to the output channels."""

    def __init__(
        self, in_channels: int, out_channels: int, config: AutoencoderConfig, device: Device, dtype: DType
    ) -> None:
        super().__init__(
            fl.GroupNorm(config.norm_groups, in_channels, eps=config.eps, device=device, dtype=dtype),
            fl.SiLU(),
            fl.Conv2d(in_channels, out_channels, 3, padding=1, device=device, dtype=dtype),
        )


class DownBlock(fl.Chain):
    """One encoder level: resnets, then (except at the last level) a stride-2 convolution."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        downsample: bool,
        config: AutoencoderConfig,
        device: Device,
        dtype: DType,
    ) -> None:
        inputs = [in_channels] + [out_channels] * (config.layers_per_block - 1)
        super().__init__(
            *(ResnetBlock(channels, out_channels, config, device, dtype) for channels in inputs),
            # padding=0: pad right and bottom by one, then convolve (the original LDM downsampling).
            *([fl.Downsample(out_channels, padding=0, device=device, dtype=dtype)] if downsample else []),
        )


class DownBlocks(fl.Chain):
    """The encoder levels, highest resolution first."""

    def __init__(self, config: AutoencoderConfig, device: Device, dtype: DType) -> None:
        channels = config.block_channels
        last = len(channels) - 1
        super().__init__(
            DownBlock(channels[max(i - 1, 0)], channels[i], i < last, config, device, dtype)
            for i in range(len(channels))
        )


class UpBlock(fl.Chain):
    """One decoder level: resnets, then (except at the last level) nearest upsampling and a 3×3 conv."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        upsample: bool,
        config: AutoencoderConfig,
        device: Device,
        dtype: DType,
    ) -> None:
        inputs = [in_channels] + [out_channels] * config.layers_per_block
        super().__init__(
            *(ResnetBlock(channels, out_channels, config, device, dtype) for channels in inputs),
            *([fl.Upsample(out_channels, device=device, dtype=dtype)] if upsample else []),
        )


class UpBlocks(fl.Chain):
    """The decoder levels, lowest resolution first."""

    def __init__(self, config: AutoencoderConfig, device: Device, dtype: DType) -> None:
        channels = config.block_channels[::-1]
        last = len(channels) - 1
        super().__init__(
            UpBlock(channels[max(i - 1, 0)], channels[i], i < last, config, device, dtype)
            for i in range(len(channels))
        )


class QuantConv(fl.Conv2d):
    """1×1 convolution over the latent moments (mean and log-variance) after the encoder."""


class PostQuantConv(fl.Conv2d):
    """1×1 convolution over the latents before the decoder."""


class LatentMean(fl.Slicing):
    """Keeps the mean, the first half of the moments' channels; the log-variance is dropped."""

    def __init__(self, latent_channels: int) -> None:
        super().__init__(dim=1, start=0, end=latent_channels)


class ScaleLatents(fl.Multiply):
    """`(z - shift) * scale`: latents with roughly unit variance for the diffusion model."""

    def __init__(self, scaling_factor: float, shift_factor: float | None) -> None:
        super().__init__(scale=scaling_factor, bias=-shift_factor * scaling_factor if shift_factor else 0.0)


class UnscaleLatents(fl.Multiply):
    """`z / scale + shift`: the inverse of `ScaleLatents`."""

    def __init__(self, scaling_factor: float, shift_factor: float | None) -> None:
        super().__init__(scale=1.0 / scaling_factor, bias=shift_factor or 0.0)


class LatentStatistics(fl.ContextModule):
    """Per-channel latent normalisation (Playground v2.5 style): `(z - mean) * scale / std`, or its inverse.

    The statistics are constants of the config, not weights: they are made on the input's device and
    dtype at each call, in the order of operations diffusers' pipelines use.
    """

    def __init__(
        self, mean: tuple[float, ...], std: tuple[float, ...], scaling_factor: float, inverse: bool
    ) -> None:
        super().__init__()
        self.mean, self.std, self.scaling_factor, self.inverse = mean, std, scaling_factor, inverse

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean).view(1, -1, 1, 1).to(x.device, x.dtype)
        std = torch.tensor(self.std).view(1, -1, 1, 1).to(x.device, x.dtype)
        if self.inverse:
            return x * std / self.scaling_factor + mean
        return (x - mean) * self.scaling_factor / std

    def extra_repr(self) -> str:
        return (
            f"mean={self.mean}, std={self.std}, scaling_factor={self.scaling_factor}, inverse={self.inverse}"
        )


def _scale(config: AutoencoderConfig) -> torch.nn.Module:
    if config.latents_mean is not None and config.latents_std is not None:
        return LatentStatistics(config.latents_mean, config.latents_std, config.scaling_factor, inverse=False)
    return ScaleLatents(config.scaling_factor, config.shift_factor)


def _unscale(config: AutoencoderConfig) -> torch.nn.Module:
    if config.latents_mean is not None and config.latents_std is not None:
        return LatentStatistics(config.latents_mean, config.latents_std, config.scaling_factor, inverse=True)
    return UnscaleLatents(config.scaling_factor, config.shift_factor)


class Encoder(fl.Chain):
    """Image in [-1, 1] → scaled latent mean."""

    def __init__(self, config: AutoencoderConfig, device: Device = None, dtype: DType = None) -> None:
        channels, moments = config.block_channels, 2 * config.latent_channels
        quant = [QuantConv(moments, moments, 1, device=device, dtype=dtype)] if config.use_quant_conv else []
        super().__init__(
            fl.Conv2d(config.in_channels, channels[0], 3, padding=1, device=device, dtype=dtype),
            DownBlocks(config, device, dtype),
            MidBlock(config, device, dtype),
            OutputBlock(channels[-1], moments, config, device, dtype),
            *quant,
            LatentMean(config.latent_channels),
            _scale(config),
        )


class Decoder(fl.Chain):
    """Scaled latents → image in [-1, 1]."""

    def __init__(self, config: AutoencoderConfig, device: Device = None, dtype: DType = None) -> None:
        channels, latent = config.block_channels, config.latent_channels
        post_quant = (
            [PostQuantConv(latent, latent, 1, device=device, dtype=dtype)]
            if config.use_post_quant_conv
            else []
        )
        super().__init__(
            _unscale(config),
            *post_quant,
            fl.Conv2d(latent, channels[-1], 3, padding=1, device=device, dtype=dtype),
            MidBlock(config, device, dtype),
            UpBlocks(config, device, dtype),
            OutputBlock(channels[0], config.out_channels, config, device, dtype),
        )


# -- model ------------------------------------------------------------------------------------------


class LatentDiffusionAutoencoder(fl.Chain):
    """The encoder then the decoder; calling the model reconstructs an image through its latents.

    Args:
        config: The architecture and latent scaling.
        device: Where to build the weights (`meta` builds none).
        dtype: The weights' dtype.
    """

    def __init__(self, config: AutoencoderConfig, device: Device = None, dtype: DType = None) -> None:
        self.config = config
        super().__init__(Encoder(config, device, dtype), Decoder(config, device, dtype))

    @property
    def encoder(self) -> Encoder:
        """The image → latents half."""
        return self.layer("Encoder", Encoder)

    @property
    def decoder(self) -> Decoder:
        """The latents → image half."""
        return self.layer("Decoder", Decoder)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Scaled latent means of (B, in_channels, H, W) images in [-1, 1] (H and W multiples of `config.downscale_factor`)."""
        return self.encoder(images)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Images in about [-1, 1] from (B, latent_channels, h, w) scaled latents."""
        return self.decoder(latents)


__all__ = [
    "AsSequence",
    "AutoencoderConfig",
    "Decoder",
    "DownBlock",
    "DownBlocks",
    "Encoder",
    "LatentDiffusionAutoencoder",
    "LatentMean",
    "LatentStatistics",
    "MidBlock",
    "OutputBlock",
    "PostQuantConv",
    "QuantConv",
    "ResnetBlock",
    "ScaleLatents",
    "SelfAttention2d",
    "UnscaleLatents",
    "UpBlock",
    "UpBlocks",
]

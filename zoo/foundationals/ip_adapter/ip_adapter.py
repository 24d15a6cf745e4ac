"""IP-Adapter: image prompts for the SD 1.5 and SDXL UNets, injected beside their text cross-attentions.

Paper: Ye et al., "IP-Adapter: Text Compatible Image Prompt Adapter for Text-to-Image Diffusion Models"
(2023, https://arxiv.org/abs/2308.06721). Upstream: https://github.com/tencent-ailab/IP-Adapter and
diffusers' IP-Adapter loading (`diffusers/loaders/unet.py`, `IPAdapterAttnProcessor2_0`).
Weights: https://huggingface.co/h94/IP-Adapter (Apache-2.0).

An `IPAdapter` holds an image projection (CLIP image feature → image tokens) and one key/value projection
pair per cross-attention of the UNet it was trained for, in the UNet's execution order (down, middle,
up). On its own, its forward maps an image feature to the tokens and every key and value (what parity
compares). Injected into a `UNet`, each pair becomes an `ImageCrossAttention` beside the text attention:

    ip = zoo.load("out/ip_adapter.sd15").inject(unet)       # or IPAdapter(IPAdapterConfig.sd15())
    ip.set_image_embedding(ip.image_embedding(encoder, pixels))   # kept for every forward until changed
    ip.scale = 0.6                                           # any time; 0 gives the UNet's own output
    unet.denoise(latents, timestep, text_embedding)
    ip.eject()                                               # the UNet as it was, bit for bit

Several IP-Adapters inject into one UNet (each under its own name and scale) and stack with LoRAs; they
eject in any order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch

import zoo.fluxion as fl
from zoo.errors import ConfigError, UsageError
from zoo.fluxion.layers.weighted import Device, DType
from zoo.foundationals.clip.image_encoder import CLIPImageEncoder, CLIPImageEncoderConfig
from zoo.foundationals.ip_adapter.attention import (
    ImageAttentionBranch,
    ImageCrossAttention,
    ImageTokens,
)
from zoo.foundationals.ip_adapter.image_projection import (
    ImageProjection,
    MLPImageProjection,
    PerceiverResampler,
)
from zoo.foundationals.latent_diffusion.unet import CrossAttention, UNet, UNetConfig

ProjectionKind = Literal["base", "plus", "full_face"]
PROJECTION_KINDS: tuple[ProjectionKind, ...] = ("base", "plus", "full_face")


def cross_attention_channels(unet: UNetConfig) -> tuple[int, ...]:
    """Channels of each cross-attention of a UNet, in execution order (down, middle, up)."""
    levels = list(zip(unet.block_channels, unet.cross_attention_levels, unet.transformer_depth, strict=True))
    down = [c for c, cross, depth in levels if cross for _ in range(unet.layers_per_block * depth)]
    middle = [unet.block_channels[-1]] * unet.transformer_depth[-1]
    up_blocks = unet.layers_per_block + 1
    up = [c for c, cross, depth in reversed(levels) if cross for _ in range(up_blocks * depth)]
    return (*down, *middle, *up)


SD15_CHANNELS = cross_attention_channels(UNetConfig.sd15())
SDXL_CHANNELS = cross_attention_channels(UNetConfig.sdxl())


@dataclass(frozen=True)
class IPAdapterConfig:
    """Architecture of an IP-Adapter (defaults: `ip-adapter_sd15`, for SD 1.5 and ViT-H/14 embeddings).

    Attributes:
        kind: The image projection: `base` (the projected image embedding → `num_tokens` tokens),
            `plus` (a perceiver resampler over the encoder's penultimate hidden states) or `full_face`
            (an MLP over those hidden states, one token per position).
        image_embedding_dim: Width of the image feature read: the encoder's projection width for `base`
            (1024 for ViT-H/14, 1280 for ViT-bigG/14), its hidden width for the others (1280 for ViT-H/14).
        cross_attention_dim: Width of the image tokens: the UNet's text embedding width.
        num_tokens: Image tokens per image (4 for `base`, 16 for `plus`; for `full_face`, the positions the
            encoder gives, 257, only recorded).
        attention_channels: Channels of each cross-attention of the UNet, in execution order.
        resampler_dim: `plus`: width of the resampler's latent queries.
        resampler_depth: `plus`: resampler layers.
        resampler_head_dim: `plus`: channels per attention head of the resampler.
        resampler_ff_multiplier: `plus`: hidden width of the resampler's feed-forward, in `resampler_dim`s.
        layer_norm_eps: Epsilon of every layer norm.
    """

    kind: ProjectionKind = "base"
    image_embedding_dim: int = 1024
    cross_attention_dim: int = 768
    num_tokens: int = 4
    attention_channels: tuple[int, ...] = SD15_CHANNELS
    resampler_dim: int = 768
    resampler_depth: int = 4
    resampler_head_dim: int = 64
    resampler_ff_multiplier: int = 4
    layer_norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        if self.kind not in PROJECTION_KINDS:
            raise ValueError(f"kind {self.kind!r} is not one of {PROJECTION_KINDS}")
        if not self.attention_channels:
            raise ValueError("attention_channels is empty: an IP-Adapter needs cross-attentions")
        if self.resampler_dim % self.resampler_head_dim:
            raise ValueError(
                f"resampler_dim {self.resampler_dim} is not a multiple of resampler_head_dim {self.resampler_head_dim}"
            )

    @property
    def reads_hidden_states(self) -> bool:
        """Whether the adapter reads the encoder's penultimate hidden states (else its image embedding)."""
        return self.kind != "base"

    @classmethod
    def for_unet(cls, unet: UNetConfig, **fields: object) -> IPAdapterConfig:
        """A config for the cross-attentions of `unet`, with the other fields given."""
        return cls(
            attention_channels=cross_attention_channels(unet),
            cross_attention_dim=unet.cross_attention_dim,
            **fields,  # pyright: ignore[reportArgumentType]
        )

    @classmethod
    def sd15(cls) -> IPAdapterConfig:
        """`ip-adapter_sd15` (and `_light`): SD 1.5, ViT-H/14 image embeddings, 4 tokens (22.3 M)."""
        return cls()

    @classmethod
    def sd15_vit_g(cls) -> IPAdapterConfig:
        """`ip-adapter_sd15_vit-G`: SD 1.5, ViT-bigG/14 image embeddings (23.1 M)."""
        return cls(image_embedding_dim=1280)

    @classmethod
    def sd15_plus(cls) -> IPAdapterConfig:
        """`ip-adapter-plus_sd15` (and `-plus-face`): ViT-H/14 hidden states, 16 tokens (49.1 M)."""
        return cls(kind="plus", image_embedding_dim=1280, num_tokens=16)

    @classmethod
    def sd15_full_face(cls) -> IPAdapterConfig:
        """`ip-adapter-full-face_sd15`: ViT-H/14 hidden states, one token per position (21.8 M)."""
        return cls(kind="full_face", image_embedding_dim=1280, num_tokens=257)

    @classmethod
    def sdxl(cls) -> IPAdapterConfig:
        """`ip-adapter_sdxl`: SDXL, ViT-bigG/14 image embeddings (351 M)."""
        return cls.for_unet(UNetConfig.sdxl(), image_embedding_dim=1280)

    @classmethod
    def sdxl_vit_h(cls) -> IPAdapterConfig:
        """`ip-adapter_sdxl_vit-h`: SDXL, ViT-H/14 image embeddings (349 M)."""
        return cls.for_unet(UNetConfig.sdxl())

    @classmethod
    def sdxl_plus_vit_h(cls) -> IPAdapterConfig:
        """`ip-adapter-plus_sdxl_vit-h` (and `-plus-face`): SDXL, ViT-H/14 hidden states, 16 tokens (424 M)."""
        return cls.for_unet(
            UNetConfig.sdxl(), kind="plus", image_embedding_dim=1280, num_tokens=16, resampler_dim=1280
        )

    @classmethod
    def tiny(cls) -> IPAdapterConfig:
        """A test twin for `UNetConfig.tiny_sd15()`."""
        return cls.for_unet(UNetConfig.tiny_sd15(), image_embedding_dim=24)


# -- building blocks ---------------------------------------------------------------------------------


class KeyValueProjection(fl.Parallel):
    """Image tokens → (keys, values) of one cross-attention: two bias-free linear maps."""

    def __init__(
        self, cross_attention_dim: int, channels: int, device: Device = None, dtype: DType = None
    ) -> None:
        super().__init__(
            fl.Linear(cross_attention_dim, channels, bias=False, device=device, dtype=dtype),
            fl.Linear(cross_attention_dim, channels, bias=False, device=device, dtype=dtype),
        )

    @property
    def key_projection(self) -> fl.Linear:
        return self[0]  # pyright: ignore[reportReturnType]

    @property
    def value_projection(self) -> fl.Linear:
        return self[1]  # pyright: ignore[reportReturnType]


class KeyValueProjections(fl.Parallel):
    """One `KeyValueProjection` per cross-attention of the UNet, in its execution order."""

    def __init__(self, config: IPAdapterConfig, device: Device = None, dtype: DType = None) -> None:
        dim = config.cross_attention_dim
        super().__init__(KeyValueProjection(dim, c, device, dtype) for c in config.attention_channels)


def image_projection(config: IPAdapterConfig, device: Device = None, dtype: DType = None) -> fl.Chain:
    """The image projection of `config.kind`."""
    dim, width, eps = config.image_embedding_dim, config.cross_attention_dim, config.layer_norm_eps
    if config.kind == "base":
        return ImageProjection(dim, width, config.num_tokens, eps, device, dtype)
    if config.kind == "full_face":
        return MLPImageProjection(dim, width, eps, device, dtype)
    return PerceiverResampler(
        dim,
        width,
        config.num_tokens,
        config.resampler_dim,
        config.resampler_depth,
        config.resampler_head_dim,
        config.resampler_ff_multiplier,
        eps,
        device,
        dtype,
    )


@dataclass(frozen=True)
class _Injection:
    """Where an IP-Adapter is injected: the UNet, its name there, and its adapters (one per attention)."""

    unet: UNet
    name: str
    adapters: tuple[ImageCrossAttention, ...]


def _described(channels: tuple[int, ...], width: int) -> str:
    span = f"{min(channels)}" if min(channels) == max(channels) else f"{min(channels)}-{max(channels)}"
    return f"{len(channels)} cross-attentions of {span} channels reading {width}-wide embeddings"


# -- the model ---------------------------------------------------------------------------------------


class IPAdapter(fl.Chain):
    """An IP-Adapter's weights, and the runtime that injects them into a UNet (see the module docstring).

    Example:
        >>> import torch
        >>> from zoo.foundationals.latent_diffusion.unet import UNet, UNetConfig
        >>> unet, ip = UNet(UNetConfig.tiny_sd15()), IPAdapter(IPAdapterConfig.tiny())
        >>> _ = ip.inject(unet)
        >>> ip.set_image_embedding(torch.randn(1, 24))
        >>> unet.denoise(torch.randn(1, 4, 16, 16), 999, torch.randn(1, 7, 32)).shape
        torch.Size([1, 4, 16, 16])
        >>> ip.eject()
    """

    def __init__(
        self, config: IPAdapterConfig | None = None, device: Device = None, dtype: DType = None
    ) -> None:
        self.config = config or IPAdapterConfig()
        self._injection: _Injection | None = None
        self._scale = 1.0
        super().__init__(
            image_projection(self.config, device, dtype),
            KeyValueProjections(self.config, device, dtype),
        )

    @property
    def image_projection(self) -> fl.Chain:
        return self[0]  # pyright: ignore[reportReturnType]

    @property
    def key_value_projections(self) -> KeyValueProjections:
        return self[1]  # pyright: ignore[reportReturnType]

    def forward(self, *args: Any) -> Any:
        """The image tokens of one image feature, and every cross-attention's (keys, values) of them."""
        tokens = self.image_projection(args[0])
        return tokens, self.key_value_projections(tokens)

    # -- run time --------------------------------------------------------------------------------------

    @property
    def name(self) -> str | None:
        """Its name in the UNet it is injected into (None when not injected)."""
        return None if self._injection is None else self._injection.name

    @property
    def scale(self) -> float:
        """Weight of the image attention (1 as trained; 0: the UNet's own output, exactly)."""
        return self._scale

    @scale.setter
    def scale(self, value: float) -> None:
        self._scale = value
        for adapter in self._injection.adapters if self._injection else ():
            adapter.branch.scale = value

    def inject(self, unet: UNet, name: str | None = None) -> IPAdapter:
        """Add the image cross-attentions to `unet` (under `name`, by default the first free one).

        Raises:
            UsageError: It is already injected.
            ConfigError: It was made for another UNet (its cross-attentions differ), or `name` is taken.
        """
        if self._injection is not None:
            raise UsageError(
                f"this IP-Adapter is already injected as {self._injection.name!r}: eject it first"
            )
        attentions = list(unet.layers(CrossAttention))
        self._check_fits(attentions)
        name = self._free_name(unet, name)
        pairs = zip(attentions, self.key_value_projections, strict=True)
        adapters = tuple(self._inject_beside(attention, kv, name) for attention, kv in pairs)  # pyright: ignore[reportArgumentType]
        self._injection = _Injection(unet, name, adapters)
        return self

    def eject(self) -> None:
        """Take the image cross-attentions out: the UNet is as it was before `inject`, bit for bit."""
        injection = self._injected()
        for adapter in injection.adapters:
            adapter.eject()
        self._injection = None

    def image_tokens(self, embedding: torch.Tensor) -> torch.Tensor:
        """Image feature(s) → (B, tokens, cross_attention_dim); several images per sample are concatenated.

        `embedding` is (B, D) or (B, images, D) for `base`, (B, L, D) or (B, images, L, D) otherwise.
        """
        single = 2 if self.config.kind == "base" else 3
        if (
            embedding.dim() not in (single, single + 1)
            or embedding.shape[-1] != self.config.image_embedding_dim
        ):
            raise ConfigError(
                f"this IP-Adapter reads {self._feature()} shaped {'(B, D)' if single == 2 else '(B, L, D)'} "
                f"with D = {self.config.image_embedding_dim}, got {tuple(embedding.shape)}"
            )
        batch = embedding.shape[0]
        images = embedding.reshape(-1, *embedding.shape[embedding.dim() - single + 1 :])
        tokens = self.image_projection(images.to(device=self.device, dtype=self.dtype))
        return tokens.reshape(batch, -1, tokens.shape[-1])

    def set_image_embedding(self, embedding: torch.Tensor) -> None:
        """The image feature(s) of every following forward of the UNet, until set again or ejected.

        Its batch is the UNet's: under classifier-free guidance, [negative, positive] (see
        `guided_image_embedding`).
        """
        injection = self._injected()
        tokens = self.image_tokens(embedding)
        for adapter in injection.adapters:
            adapter.branch.tokens = tokens

    def check_image_encoder(self, encoder: CLIPImageEncoderConfig) -> None:
        """Raise `ConfigError` unless `encoder` gives the image feature this IP-Adapter reads."""
        check_image_encoder(self.config, encoder)

    def image_embedding(self, encoder: CLIPImageEncoder, pixels: torch.Tensor) -> torch.Tensor:
        """The feature of preprocessed `pixels` this IP-Adapter reads (checked against the encoder)."""
        self.check_image_encoder(encoder.config)
        output = encoder.encode(pixels)
        return output.penultimate_hidden_state if self.config.reads_hidden_states else output.image_embedding

    def guided_image_embedding(self, encoder: CLIPImageEncoder, pixels: torch.Tensor) -> torch.Tensor:
        """[negative, positive] features of `pixels` for a guided generation's [negative, positive] batch.

        The negative is what diffusers' pipelines pair with an image prompt: zeros for an adapter that
        reads the projected embedding, the hidden states of all-zero (normalised) pixels for the others.
        """
        positive = self.image_embedding(encoder, pixels)
        if self.config.reads_hidden_states:
            negative = self.image_embedding(encoder, torch.zeros_like(pixels))
        else:
            negative = torch.zeros_like(positive)
        return torch.cat([negative, positive])

    # -- helpers ---------------------------------------------------------------------------------------

    def _feature(self) -> str:
        return (
            "penultimate hidden states" if self.config.reads_hidden_states else "projected image embeddings"
        )

    def _injected(self) -> _Injection:
        if self._injection is None:
            raise UsageError("this IP-Adapter is not injected: call inject(unet) first")
        return self._injection

    def _check_fits(self, attentions: list[CrossAttention]) -> None:
        found = tuple(attention.inner_dim for attention in attentions)
        widths = sorted({_key_width(attention) for attention in attentions})
        expected = self.config.attention_channels
        if found != expected or widths != [self.config.cross_attention_dim]:
            ours = _described(expected, self.config.cross_attention_dim)
            theirs = (
                _described(found, widths[0])
                if found and len(widths) == 1
                else f"{len(found)} cross-attentions"
            )
            raise ConfigError(
                f"this IP-Adapter was made for a UNet with {ours}; this UNet has {theirs}",
                hint="use the IP-Adapter made for this base (SD 1.5 or SDXL)",
            )

    def _free_name(self, unet: UNet, name: str | None) -> str:
        taken = {tokens.name for tokens in unet.layers(ImageTokens)}
        if name is not None and name in taken:
            raise ConfigError(f"the UNet already has an IP-Adapter named {name!r}", hint="pick another name")
        return name or next(
            f"image_prompt_{i}" for i in range(len(taken) + 1) if f"image_prompt_{i}" not in taken
        )

    def _inject_beside(
        self, attention: CrossAttention, kv: KeyValueProjection, name: str
    ) -> ImageCrossAttention:
        core = next(c for c in attention if isinstance(c, fl.ScaledDotProductAttention | ImageCrossAttention))
        heads = attention.ensure_find(fl.ScaledDotProductAttention).num_heads
        branch = ImageAttentionBranch(name, kv.key_projection, kv.value_projection, heads, self._scale)
        return ImageCrossAttention(core, branch).inject(attention)


def _feature(config: IPAdapterConfig) -> str:
    return "penultimate hidden states" if config.reads_hidden_states else "projected image embeddings"


def check_image_encoder(config: IPAdapterConfig, encoder: CLIPImageEncoderConfig) -> None:
    """Raise `ConfigError`, naming both, unless `encoder` gives the image feature `config` reads."""
    width = encoder.hidden_size if config.reads_hidden_states else encoder.projection_dim
    if width != config.image_embedding_dim:
        raise ConfigError(
            f"this IP-Adapter reads {_feature(config)} {config.image_embedding_dim} wide; the image "
            f"encoder ({_encoder_name(encoder)}) gives them {width} wide",
            hint="*_vit-h IP-Adapters need ViT-H/14 (h94/IP-Adapter models/image_encoder); ip-adapter_sdxl "
            "and *_vit-G need ViT-bigG/14 (sdxl_models/image_encoder)",
        )


def _key_width(attention: CrossAttention) -> int:
    """Width of the text embedding a cross-attention reads (its key projection's input; LoRAs unwrapped)."""
    layer: Any = attention.ensure_find(fl.Distribute)[1]
    while isinstance(layer, fl.Adapter):
        layer = layer.target
    return layer.in_features


_ENCODERS = {
    "ViT-L/14": CLIPImageEncoderConfig.vit_l14(),
    "ViT-H/14": CLIPImageEncoderConfig.vit_h14(),
    "ViT-bigG/14": CLIPImageEncoderConfig.vit_big_g14(),
}


def _encoder_name(config: CLIPImageEncoderConfig) -> str:
    for name, known in _ENCODERS.items():
        if (known.hidden_size, known.num_layers, known.projection_dim) == (
            config.hidden_size,
            config.num_layers,
            config.projection_dim,
        ):
            return name
    return f"{config.hidden_size}-wide, {config.num_layers} layers"


__all__ = [
    "PROJECTION_KINDS",
    "SD15_CHANNELS",
    "SDXL_CHANNELS",
    "IPAdapter",
    "IPAdapterConfig",
    "KeyValueProjection",
    "KeyValueProjections",
    "ProjectionKind",
    "check_image_encoder",
    "cross_attention_channels",
    "image_projection",
]

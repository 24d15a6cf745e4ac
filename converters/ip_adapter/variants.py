"""The declared IP-Adapters: which base, which image feature, which projection, and their tiny twins.

A variant is told apart, whatever its size, by its projection kind, its base UNet (SD 1.5's or SDXL's
cross-attentions, or their tiny twins') and the image encoder whose feature it reads (ViT-H/14 or
ViT-bigG/14, by width, or their tiny twins' widths: see `converters/clip_vision/tiny.py`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Any

from converters.clip_vision.tiny import TINY as ENCODERS_TINY
from converters.declaration import Conversion, Size
from converters.ip_adapter.reference import upstream_config
from converters.stable_diffusion.unet import derive_unet_config
from zoo.foundationals.ip_adapter.ip_adapter import IPAdapterConfig, cross_attention_channels

VIT_H14, VIT_BIG_G14 = "ViT-H/14", "ViT-bigG/14"
_TINY_ENCODERS = {VIT_H14: ENCODERS_TINY["vit_h14"], VIT_BIG_G14: ENCODERS_TINY["vit_big_g14"]}


@dataclass(frozen=True)
class IPAdapterVariant:
    """One declared IP-Adapter.

    Attributes:
        component: Its conversion's component (`sd15_plus`).
        title: In words ("IP-Adapter plus").
        base: The declared conversion of the UNet it is for (its family's `unet`).
        base_title: That base in words ("SD 1.5").
        encoder: The image encoder whose feature it reads ("ViT-H/14").
        full: Its full-size config.
        hub_file: Its file in h94/IP-Adapter.
        tiny_resampler_dim: `plus`: the width of its tiny twin's resampler (64-channel heads).
    """

    component: str
    title: str
    base: Conversion
    base_title: str
    encoder: str
    full: IPAdapterConfig
    hub_file: str
    tiny_resampler_dim: int = 64

    @property
    def description(self) -> str:
        feature = "hidden states" if self.full.reads_hidden_states else "image embeddings"
        return f"{self.title} for {self.base_title} ({self.encoder} {feature}, {self.full.num_tokens} tokens)"

    def unet(self, size: Size) -> dict[str, Any]:
        """The base UNet's diffusers config at a size."""
        return dict(self.base.synthetic_configs(size)["unet"])

    def config(self, size: Size) -> IPAdapterConfig:
        """Our config at a size; the tiny twin reads its encoder's tiny twin's feature."""
        if size == "full":
            return self.full
        encoder = _TINY_ENCODERS[self.encoder]
        width = encoder["hidden_size"] if self.full.reads_hidden_states else encoder["projection_dim"]
        tiny = IPAdapterConfig.for_unet(derive_unet_config(self.unet("tiny")))
        return replace(
            self.full,
            **_attention_fields(tiny),
            image_embedding_dim=width,
            resampler_dim=self.tiny_resampler_dim,
        )

    def upstream(self, size: Size) -> dict[str, Any]:
        """The upstream config (the `ip_adapter` part's config.json) at a size."""
        return upstream_config(self.unet(size), self.config(size))

    def misfit(self, config: IPAdapterConfig) -> str | None:
        """None when `config` is this variant's (full or tiny), else what differs."""
        if config.kind != self.full.kind:
            return f"a {config.kind} IP-Adapter; {self.component} is {self.full.kind}"
        if (config.attention_channels, config.cross_attention_dim) not in self._bases:
            return f"an IP-Adapter for {len(config.attention_channels)} cross-attentions; {self.component} is for {self.base_title}"
        widths = {self.full.image_embedding_dim, self.config("tiny").image_embedding_dim}
        if config.image_embedding_dim not in widths:
            return (
                f"it reads {config.image_embedding_dim}-wide features; {self.component} reads "
                f"{self.full.image_embedding_dim}-wide ones ({self.encoder})"
            )
        return None

    @functools.cached_property
    def _bases(self) -> set[tuple[tuple[int, ...], int]]:
        """The base's cross-attentions (channels, width), full-size and tiny."""
        unets = (derive_unet_config(self.unet(size)) for size in ("full", "tiny"))
        return {(cross_attention_channels(unet), unet.cross_attention_dim) for unet in unets}


def _attention_fields(config: IPAdapterConfig) -> dict[str, Any]:
    return {
        "attention_channels": config.attention_channels,
        "cross_attention_dim": config.cross_attention_dim,
    }


__all__ = ["VIT_BIG_G14", "VIT_H14", "IPAdapterVariant"]

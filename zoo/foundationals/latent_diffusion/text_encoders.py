"""Text conditioning of Stable Diffusion 1.5 and SDXL, built on CLIP text towers.

Papers: Rombach et al., "High-Resolution Image Synthesis with Latent Diffusion Models" (2021,
https://arxiv.org/abs/2112.10752); Podell et al., "SDXL: Improving Latent Diffusion Models for
High-Resolution Image Synthesis" (2023, https://arxiv.org/abs/2307.01952).
Upstream: https://github.com/CompVis/stable-diffusion, https://github.com/Stability-AI/generative-models;
the reference behaviour followed here is diffusers' pipelines (`StableDiffusionPipeline._encode_prompt`,
`StableDiffusionXLPipeline.encode_prompt` with `clip_skip=None`).
Weights: SD 1.5 under CreativeML OpenRAIL-M; SDXL base 1.0 under CreativeML OpenRAIL++-M.

- SD 1.5 conditions on CLIP-L's last hidden state, after the final layer norm.
- SDXL conditions on the concatenation of CLIP-L's and OpenCLIP bigG's penultimate hidden states
  (no final norm), 768 + 1280 = 2048 wide, and adds bigG's projected pooled output (1280) to the
  time embedding. Both towers are kept whole (every upstream tensor is used), so the CLIP-L tower here
  has the same weights as SD 1.5's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

import zoo.fluxion as fl
from zoo.fluxion.layers.weighted import Device, DType
from zoo.foundationals.clip.text_encoder import CLIPTextEncoder, CLIPTextEncoderConfig


@dataclass(frozen=True)
class SDXLTextEncoderConfig:
    """The two towers of SDXL's text conditioning (defaults: SDXL base 1.0).

    Attributes:
        text_encoder: The first tower (CLIP-L); only its penultimate hidden state is used.
        text_encoder_2: The second tower (bigG, with projection); its penultimate hidden state and its
            projected pooled output are used.
    """

    text_encoder: CLIPTextEncoderConfig = field(default_factory=CLIPTextEncoderConfig.clip_l)
    text_encoder_2: CLIPTextEncoderConfig = field(default_factory=CLIPTextEncoderConfig.open_clip_big_g)

    def __post_init__(self) -> None:
        if self.text_encoder_2.projection_dim is None:
            raise ValueError("SDXL's second text encoder needs a projection (projection_dim is None)")
        first, second = self.text_encoder.max_position_embeddings, self.text_encoder_2.max_position_embeddings
        if first != second:
            raise ValueError(f"both towers must read the same sequence length, got {first} and {second}")

    @property
    def context_dim(self) -> int:
        """Width of the cross-attention context: both towers' hidden sizes."""
        return self.text_encoder.hidden_size + self.text_encoder_2.hidden_size

    @property
    def pooled_dim(self) -> int:
        """Width of the pooled text embedding."""
        assert self.text_encoder_2.projection_dim is not None  # checked in __post_init__
        return self.text_encoder_2.projection_dim

    @classmethod
    def sdxl(cls) -> SDXLTextEncoderConfig:
        """SDXL base 1.0 (and the refiner's second tower): CLIP-L + OpenCLIP bigG."""
        return cls()

    @classmethod
    def tiny(cls) -> SDXLTextEncoderConfig:
        """A test twin: the tiny CLIP-L and tiny bigG-like towers."""
        return cls(CLIPTextEncoderConfig.tiny(), CLIPTextEncoderConfig.tiny_with_projection())


class SD15TextEncoder(CLIPTextEncoder):
    """SD 1.5's text conditioning: token ids (B, 77) → CLIP-L's last hidden state (B, 77, 768).

    The same tower (and the same state-dict keys) as `CLIPTextEncoder`; pass
    `CLIPTextEncoderConfig.clip_l()` for SD 1.5.
    """


class CLIPTextEncoderL(CLIPTextEncoder):
    """SDXL's first tower (CLIP-L); stores its outputs in the context `clip_l`."""

    context_name = "clip_l"


class CLIPTextEncoderG(CLIPTextEncoder):
    """SDXL's second tower (OpenCLIP bigG with projection); stores its outputs in the context `clip_g`."""

    context_name = "clip_g"


class TextEncoders(fl.Distribute):
    """Runs each tower on its own token ids (the two SDXL tokenizers differ only in padding)."""

    def __init__(self, config: SDXLTextEncoderConfig, device: Device = None, dtype: DType = None) -> None:
        super().__init__(
            CLIPTextEncoderL(config.text_encoder, device=device, dtype=dtype),
            CLIPTextEncoderG(config.text_encoder_2, device=device, dtype=dtype),
        )


class SDXLConditioning(fl.Parallel):
    """(context, pooled): both penultimate states side by side, and bigG's projected pooled output."""

    def __init__(self) -> None:
        super().__init__(
            fl.Concatenate(
                fl.UseContext(CLIPTextEncoderL.context_name, "penultimate"),
                fl.UseContext(CLIPTextEncoderG.context_name, "penultimate"),
                dim=-1,
            ),
            fl.UseContext(CLIPTextEncoderG.context_name, "pooled"),
        )


class SDXLTextEncoder(fl.Chain):
    """SDXL's text conditioning: token ids → (context (B, 77, 2048), pooled text embedding (B, 1280)).

    The state dict holds both towers, under `TextEncoders.CLIPTextEncoderL` and
    `TextEncoders.CLIPTextEncoderG`.

    Example:
        >>> import torch
        >>> encoder = SDXLTextEncoder(SDXLTextEncoderConfig.tiny())
        >>> context, pooled = encoder(torch.randint(0, 1000, (2, 77)))
        >>> context.shape, pooled.shape
        (torch.Size([2, 77, 72]), torch.Size([2, 24]))
    """

    def __init__(self, config: SDXLTextEncoderConfig, device: Device = None, dtype: DType = None) -> None:
        self.config = config
        super().__init__(TextEncoders(config, device=device, dtype=dtype), SDXLConditioning())

    def forward(  # pyright: ignore[reportIncompatibleMethodOverride]  (two named inputs, not *args)
        self, input_ids: torch.Tensor, input_ids_2: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode token ids; `input_ids_2` (the second tokenizer's ids) defaults to `input_ids`."""
        return super().forward(input_ids, input_ids if input_ids_2 is None else input_ids_2)


__all__ = [
    "CLIPTextEncoderG",
    "CLIPTextEncoderL",
    "SD15TextEncoder",
    "SDXLConditioning",
    "SDXLTextEncoder",
    "SDXLTextEncoderConfig",
    "TextEncoders",
]

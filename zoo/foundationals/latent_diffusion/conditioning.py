"""Prompts to the UNet's conditioning, as diffusers' SD 1.5 and SDXL pipelines compute it.

SD 1.5 (`StableDiffusionPipeline.encode_prompt`, `clip_skip=None`): CLIP-L's last hidden state after
its final norm; the negative prompt defaults to "".

SDXL (`StableDiffusionXLPipeline.encode_prompt`): the two towers' penultimate hidden states side by
side, bigG's projected pooled output, and the six size/crop ids (original height and width, crop top
and left, target height and width). Without a negative prompt, the negative conditioning is zeros
(`force_zeros_for_empty_prompt`, true for SDXL base); with one, it is encoded like the prompt.

With classifier-free guidance the batch is [negative, positive], negative first, as diffusers stacks it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from zoo.errors import ConfigError
from zoo.foundationals.clip.tokenizer import CLIPTokenizer
from zoo.foundationals.latent_diffusion.text_encoders import SD15TextEncoder, SDXLTextEncoder


@dataclass(frozen=True)
class Conditioning:
    """What the UNet reads besides the latents and the timestep, batch first.

    Attributes:
        text: (B, L, context) cross-attention context.
        pooled: SDXL's (B, D) pooled text embedding; None for SD 1.5.
        time_ids: SDXL's (B, 6) size and crop ids; None for SD 1.5.
    """

    text: torch.Tensor
    pooled: torch.Tensor | None = None
    time_ids: torch.Tensor | None = None

    @staticmethod
    def stacked(negative: Conditioning, positive: Conditioning) -> Conditioning:
        """[negative, positive] along the batch, for one guided UNet call."""

        def cat(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
            return None if a is None or b is None else torch.cat([a, b])

        return Conditioning(
            torch.cat([negative.text, positive.text]),
            cat(negative.pooled, positive.pooled),
            cat(negative.time_ids, positive.time_ids),
        )


@dataclass(frozen=True)
class SizeConditioning:
    """SDXL's micro-conditioning (Podell et al. 2023, section 2.2), in pixels.

    Attributes:
        original_size: (height, width) the image is said to come from; default the target size.
        crop_top_left: (top, left) of the crop it is said to be; default (0, 0).
        target_size: (height, width) of the image made; default the generated size.
    """

    original_size: tuple[int, int] | None = None
    crop_top_left: tuple[int, int] = (0, 0)
    target_size: tuple[int, int] | None = None

    def time_ids(self, height: int, width: int) -> torch.Tensor:
        """(1, 6) ids: original size, crop, target size."""
        original = self.original_size or (height, width)
        target = self.target_size or (height, width)
        return torch.tensor([[*original, *self.crop_top_left, *target]])


def _ids(tokenizer: CLIPTokenizer, prompt: str, device: torch.device) -> torch.Tensor:
    return tokenizer([prompt]).to(device)


def sd15_conditioning(
    encoder: SD15TextEncoder, tokenizer: CLIPTokenizer, prompt: str, dtype: torch.dtype
) -> Conditioning:
    """One prompt through CLIP-L: its last hidden state, in the UNet's dtype."""
    device = next(encoder.parameters()).device
    return Conditioning(encoder(_ids(tokenizer, prompt, device)).to(dtype))


def sdxl_conditioning(
    encoder: SDXLTextEncoder,
    tokenizers: Sequence[CLIPTokenizer],
    prompts: tuple[str, str],
    time_ids: torch.Tensor,
    dtype: torch.dtype,
) -> Conditioning:
    """A prompt for each tower (`prompt`, `prompt_2`): context, pooled embedding, time ids."""
    if len(tokenizers) != 2:
        raise ConfigError(f"an SDXL text encoder needs two tokenizers, got {len(tokenizers)}")
    device = next(encoder.parameters()).device
    ids = [_ids(tokenizer, prompt, device) for tokenizer, prompt in zip(tokenizers, prompts, strict=True)]
    context, pooled = encoder(*ids)
    return Conditioning(context.to(dtype), pooled.to(dtype), time_ids.to(device, dtype))


def zeros_like(conditioning: Conditioning) -> Conditioning:
    """SDXL's negative conditioning for an absent negative prompt: zeros, the same time ids."""
    pooled = None if conditioning.pooled is None else torch.zeros_like(conditioning.pooled)
    return Conditioning(torch.zeros_like(conditioning.text), pooled, conditioning.time_ids)


__all__ = [
    "Conditioning",
    "SizeConditioning",
    "sd15_conditioning",
    "sdxl_conditioning",
    "zeros_like",
]

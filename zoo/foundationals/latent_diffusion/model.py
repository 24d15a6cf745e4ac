"""Text to image with our SD 1.5 and SDXL models: the same latents and image as diffusers for a seed.

Papers: Rombach et al. 2021 (https://arxiv.org/abs/2112.10752), Podell et al. 2023
(https://arxiv.org/abs/2307.01952); classifier-free guidance: Ho & Salimans 2022
(https://arxiv.org/abs/2207.12598). The reference behaviour is diffusers' `StableDiffusionPipeline` and
`StableDiffusionXLPipeline` (`__call__` with one image per prompt, `eta=0`, no guidance rescale):

1. the prompt (and the negative one, when guiding) becomes the UNet's conditioning (`conditioning`);
2. the start is seeded noise of shape (1, C, H/8, W/8) drawn from a CPU `torch.Generator` as diffusers'
   `randn_tensor` draws it, times the solver's initial sigma;
3. each step runs the UNet on [negative, positive] latents (guided: `uncond + g * (cond - uncond)`) and
   the solver steps;
4. the autoencoder decodes the latents (in float32 when its config says float16 overflows), and the
   image goes from [-1, 1] to [0, 1].

Adapters injected into the UNet or the text encoder (LoRAs, IP-Adapters, ControlNets, T2I-Adapters)
take part as they are (an IP-Adapter's image embedding is [negative, positive] when guiding); layers
that act on some steps only (`steps.StepAware`) are told each step before the UNet runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from zoo.errors import ConfigError
from zoo.foundationals.clip.tokenizer import CLIPTokenizer
from zoo.foundationals.latent_diffusion.autoencoder import LatentDiffusionAutoencoder
from zoo.foundationals.latent_diffusion.conditioning import (
    Conditioning,
    SizeConditioning,
    sd15_conditioning,
    sdxl_conditioning,
    zeros_like,
)
from zoo.foundationals.latent_diffusion.solvers import Solver, gaussian_noise, solver_from_name
from zoo.foundationals.latent_diffusion.steps import announce_step
from zoo.foundationals.latent_diffusion.text_encoders import SD15TextEncoder, SDXLTextEncoder
from zoo.foundationals.latent_diffusion.unet import UNet

TextEncoder = SD15TextEncoder | SDXLTextEncoder
StepCallback = Callable[[int, int], None]  # (steps done, steps in all)
DEFAULT_LATENT_SIZE = 64  # latents per side when the UNet's config does not say (SD 1.5's)


@dataclass(frozen=True)
class GenerationSettings:
    """Everything that decides an image besides the weights; written into the PNG it makes.

    Attributes:
        prompt: What to draw.
        negative_prompt: What to steer away from; None: SDXL's zeros, or "" for SD 1.5.
        seed: Seeds the CPU generator of the starting noise (and of an ancestral solver's noise).
        steps: Solver steps.
        solver: A solver name (`ddim`, `euler`, `euler_ancestral`, `dpmpp_2m`, `dpmpp_2m_karras`).
        guidance: Classifier-free guidance scale; at most 1 means no guidance (one UNet batch).
        width: Image width in pixels, a multiple of the autoencoder's downscale factor.
        height: Image height in pixels, likewise.
        size: SDXL's micro-conditioning.
    """

    prompt: str
    negative_prompt: str | None = None
    seed: int = 0
    steps: int = 30
    solver: str = "euler"
    guidance: float = 7.5
    width: int | None = None
    height: int | None = None
    size: SizeConditioning = field(default_factory=SizeConditioning)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Generated:
    """One generation: the final latents, the image (1, 3, H, W) in [0, 1], and its settings."""

    latents: torch.Tensor
    image: torch.Tensor
    settings: GenerationSettings


@dataclass
class StableDiffusion:
    """A UNet, its text encoder(s) and tokenizers, an autoencoder and a scheduler config, used together.

    Build it with `load_stable_diffusion(OUT)` from `zoo convert sd15|sdxl` outputs, or from models in
    memory. SDXL is told by the UNet's added text/time conditioning.

    Attributes:
        unet: The denoising UNet.
        text_encoder: SD 1.5's CLIP-L, or SDXL's two towers.
        autoencoder: The autoencoder (its config carries the latent scale).
        tokenizers: One per text tower.
        scheduler_config: The pipeline's `scheduler_config.json` content, which configures the solvers.
        zeros_for_empty_negative: SDXL: an absent negative prompt is zeros (diffusers'
            `force_zeros_for_empty_prompt`, true for SDXL base).
    """

    unet: UNet
    text_encoder: TextEncoder
    autoencoder: LatentDiffusionAutoencoder
    tokenizers: Sequence[CLIPTokenizer]
    scheduler_config: Mapping[str, Any]
    zeros_for_empty_negative: bool = True

    def __post_init__(self) -> None:
        expected = SDXLTextEncoder if self.is_sdxl else SD15TextEncoder
        if not isinstance(self.text_encoder, expected):
            kind = "an SDXL" if self.is_sdxl else "an SD 1.5"
            raise ConfigError(
                f"{kind} UNet needs a {expected.__name__}, got a {type(self.text_encoder).__name__}"
            )

    @property
    def is_sdxl(self) -> bool:
        """Whether the UNet takes SDXL's added text and time conditioning."""
        return self.unet.config.addition_embed_type == "text_time"

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    @property
    def default_size(self) -> int:
        """Pixels per side the UNet was trained at (its config's sample size times the downscale)."""
        latents = self.unet.config.sample_size or DEFAULT_LATENT_SIZE
        return latents * self.autoencoder.config.downscale_factor

    def conditioning(self, settings: GenerationSettings, height: int, width: int) -> Conditioning:
        """The UNet's conditioning for the settings: [negative, positive] when guiding."""
        positive = self._encode(settings.prompt, settings, height, width)
        if settings.guidance <= 1:
            return positive
        if self.is_sdxl and settings.negative_prompt is None and self.zeros_for_empty_negative:
            return Conditioning.stacked(zeros_like(positive), positive)
        negative = self._encode(settings.negative_prompt or "", settings, height, width)
        return Conditioning.stacked(negative, positive)

    def _encode(self, prompt: str, settings: GenerationSettings, height: int, width: int) -> Conditioning:
        with torch.no_grad():
            if isinstance(self.text_encoder, SDXLTextEncoder):
                time_ids = settings.size.time_ids(height, width)
                return sdxl_conditioning(
                    self.text_encoder, self.tokenizers, (prompt, prompt), time_ids, self.dtype
                )
            return sd15_conditioning(self.text_encoder, self.tokenizers[0], prompt, self.dtype)

    def initial_latents(
        self, solver: Solver[Any], generator: torch.Generator, height: int, width: int
    ) -> torch.Tensor:
        """Seeded noise (1, C, H/f, W/f) times the solver's initial sigma, as diffusers draws it."""
        factor = self.autoencoder.config.downscale_factor
        shape = (1, self.unet.config.in_channels, height // factor, width // factor)
        noise = gaussian_noise(shape, generator, self.device, self.dtype)
        return noise * solver.init_noise_sigma.to(self.device)

    def denoise(
        self,
        latents: torch.Tensor,
        solver: Solver[Any],
        conditioning: Conditioning,
        settings: GenerationSettings,
        generator: torch.Generator,
        on_step: StepCallback | None = None,
    ) -> torch.Tensor:
        """Run every step of the solver from `latents`."""
        steps = len(solver.timesteps)
        try:
            for index, timestep in enumerate(solver.timesteps):
                announce_step(self.unet, index, steps)
                latents = self._step(latents, solver, conditioning, settings, generator, index, timestep)
                if on_step is not None:
                    on_step(index + 1, steps)
        finally:
            announce_step(self.unet, None, steps)
        return latents

    def _step(
        self,
        latents: torch.Tensor,
        solver: Solver[Any],
        conditioning: Conditioning,
        settings: GenerationSettings,
        generator: torch.Generator,
        index: int,
        timestep: torch.Tensor,
    ) -> torch.Tensor:
        """One solver step: the UNet (guided: on [negative, positive] latents), then the solver."""
        guided = settings.guidance > 1
        model_input = solver.scale_model_input(torch.cat([latents] * 2) if guided else latents, index)
        with torch.no_grad():
            prediction = self.unet.denoise(
                model_input, timestep, conditioning.text, conditioning.pooled, conditioning.time_ids
            )
        if guided:
            unconditional, conditional = prediction.chunk(2)
            prediction = unconditional + settings.guidance * (conditional - unconditional)
        return solver.step(latents, prediction, index, generator=generator)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents to an image (1, 3, H, W) in [0, 1]; in float32 when float16 would overflow."""
        autoencoder_dtype = next(self.autoencoder.parameters()).dtype
        upcast = autoencoder_dtype == torch.float16 and self.autoencoder.config.force_upcast
        with torch.no_grad():
            if upcast:
                self.autoencoder.to(torch.float32)
            try:
                target = torch.float32 if upcast else autoencoder_dtype
                image = self.autoencoder.decode(latents.to(target))
            finally:
                if upcast:
                    self.autoencoder.to(torch.float16)
        return (image / 2 + 0.5).clamp(0, 1)

    def generate(self, settings: GenerationSettings, on_step: StepCallback | None = None) -> Generated:
        """Make the image the settings describe (one prompt, one image)."""
        height, width = self._size(settings)
        solver = solver_from_name(settings.solver, self.scheduler_config, settings.steps)
        generator = torch.Generator().manual_seed(settings.seed)
        conditioning = self.conditioning(settings, height, width)
        latents = self.initial_latents(solver, generator, height, width)
        latents = self.denoise(latents, solver, conditioning, settings, generator, on_step)
        return Generated(latents, self.decode(latents), settings)

    def _size(self, settings: GenerationSettings) -> tuple[int, int]:
        height, width = settings.height or self.default_size, settings.width or self.default_size
        factor = self.autoencoder.config.downscale_factor
        if height % factor or width % factor or height <= 0 or width <= 0:
            raise ConfigError(
                f"width and height must be positive multiples of {factor}, got {width}×{height}"
            )
        return height, width


__all__ = ["Generated", "GenerationSettings", "StableDiffusion", "StepCallback", "TextEncoder"]

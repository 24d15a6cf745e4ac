"""SD 1.5's original single file (`v1-5-pruned-emaonly.safetensors`, LDM layout): layouts, recognizers, writer.

The UNet sits under `model.diffusion_model.` (its EMA copy, when kept, under `model_ema.`), CLIP-L
under `cond_stage_model.transformer.` (transformers' names) and the VAE under `first_stage_model.`.
The family constants no shape shows come from LDM's training config: 8 heads per level, 1×1
convolution projections, no added conditioning, latent scaling 0.18215. Files also hold the training
noise schedule (`betas`, `alphas_cumprod`, ...), which conversions ignore.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from converters.family import Recognizer, SingleFileFormat, has_prefix
from converters.stable_diffusion.original_autoencoder import AutoencoderFamily, autoencoder_layout
from converters.stable_diffusion.original_names import EMA_PREFIX, UNET_PREFIX, VAE_PREFIX
from converters.stable_diffusion.original_text import clip_text_layout
from converters.stable_diffusion.original_unet import UNetFamily, unet_layout
from converters.stable_diffusion.original_writer import (
    Header,
    OriginalFile,
    OriginalTensor,
    clip_position_ids,
    clip_tensors,
    constant_tensor,
    unet_tensors,
    vae_tensors,
    write_original_file,
)

CLIP_PREFIX = "cond_stage_model.transformer."
SD2_MARKER = "cond_stage_model.model."  # SD 2.x: an OpenCLIP text encoder in OpenCLIP's layout
TRAINING_STEPS = 1000
BETA_START, BETA_END = 0.00085, 0.012  # LDM's scaled-linear schedule

UNET = UNetFamily(
    "SD 1.5",
    head_dim=None,
    num_heads=8,
    linear_projection=False,
    addition_time_embed_dim=None,
    sample_size=64,
)
AUTOENCODER = AutoencoderFamily(scaling_factor=0.18215, sample_size=512)

UNET_LAYOUT = unet_layout(UNET)
TEXT_ENCODER_LAYOUT = clip_text_layout(CLIP_PREFIX)
AUTOENCODER_LAYOUT = autoencoder_layout(AUTOENCODER)


def noise_schedule() -> tuple[torch.Tensor, torch.Tensor]:
    """The training betas and their cumulative alphas, as LDM stores them."""
    betas = torch.linspace(BETA_START**0.5, BETA_END**0.5, TRAINING_STEPS, dtype=torch.float64) ** 2
    return betas.float(), torch.cumprod(1 - betas, 0).float()


def _extras(headers: Mapping[str, Header]) -> dict[str, OriginalTensor]:
    """CLIP-L's position ids, EMA bookkeeping and the noise schedule, which real files hold."""
    steps = (TRAINING_STEPS,)
    return {
        f"{CLIP_PREFIX}text_model.embeddings.position_ids": clip_position_ids(headers["text_encoder"]),
        f"{EMA_PREFIX}decay": constant_tensor((), torch.float32, lambda: torch.tensor(0.9999)),
        f"{EMA_PREFIX}num_updates": constant_tensor(
            (), torch.int32, lambda: torch.tensor(0, dtype=torch.int32)
        ),
        "betas": constant_tensor(steps, torch.float32, lambda: noise_schedule()[0]),
        "alphas_cumprod": constant_tensor(steps, torch.float32, lambda: noise_schedule()[1]),
    }


ORIGINAL_FILE = OriginalFile(
    "SD 1.5 original single file (LDM layout)",
    parts={
        "unet": (UNET_PREFIX, unet_tensors),
        "text_encoder": (CLIP_PREFIX, clip_tensors),
        "vae": (VAE_PREFIX, vae_tensors),
    },
    extras=_extras,
)


def _write_synthetic(pipeline_folder: Path, out_file: Path) -> Path:
    return write_original_file(ORIGINAL_FILE, pipeline_folder, out_file)


SINGLE_FILE = SingleFileFormat(
    Recognizer("an SD 1.x checkpoint (LDM layout)", has_prefix(CLIP_PREFIX), "sd15"),
    write_synthetic=_write_synthetic,
)
SD2 = Recognizer("an SD 2.x checkpoint (LDM layout, OpenCLIP text encoder)", has_prefix(SD2_MARKER))

__all__ = [
    "AUTOENCODER_LAYOUT",
    "ORIGINAL_FILE",
    "SD2",
    "SINGLE_FILE",
    "TEXT_ENCODER_LAYOUT",
    "UNET_LAYOUT",
    "noise_schedule",
]

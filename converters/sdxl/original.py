"""SDXL's original single file (`sd_xl_base_1.0.safetensors`, SGM layout): layouts, recognizers, writer.

The UNet sits under `model.diffusion_model.`, CLIP-L under `conditioner.embedders.0.transformer.`
(transformers' names), OpenCLIP bigG under `conditioner.embedders.1.model.` (OpenCLIP's layout) and
the VAE under `first_stage_model.`. The family constants no shape shows come from SGM's training
config and the Hub's `config.json` files: 64-channel heads, linear projections, 256-wide time-id
embedding, latent scaling 0.13025.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import torch

from converters.family import Recognizer, SingleFileFormat, has_prefix
from converters.stable_diffusion.original_autoencoder import AutoencoderFamily, autoencoder_layout
from converters.stable_diffusion.original_names import UNET_PREFIX, VAE_PREFIX
from converters.stable_diffusion.original_text import two_tower_text_layout
from converters.stable_diffusion.original_unet import UNetFamily, unet_layout
from converters.stable_diffusion.original_writer import (
    Header,
    OriginalFile,
    OriginalTensor,
    clip_position_ids,
    clip_tensors,
    constant_tensor,
    open_clip_tensors,
    unet_tensors,
    vae_tensors,
    write_original_file,
)

CLIP_PREFIX = "conditioner.embedders.0.transformer."
OPEN_CLIP_PREFIX = "conditioner.embedders.1.model."
REFINER_MARKER = "conditioner.embedders.0.model."  # the refiner has OpenCLIP bigG alone, first

UNET = UNetFamily(
    "SDXL", head_dim=64, num_heads=None, linear_projection=True, addition_time_embed_dim=256, sample_size=128
)
AUTOENCODER = AutoencoderFamily(scaling_factor=0.13025, sample_size=1024)

UNET_LAYOUT = unet_layout(UNET)
TEXT_ENCODER_LAYOUT = two_tower_text_layout(CLIP_PREFIX, OPEN_CLIP_PREFIX)
AUTOENCODER_LAYOUT = autoencoder_layout(AUTOENCODER)


def _extras(headers: Mapping[str, Header]) -> dict[str, OriginalTensor]:
    """CLIP-L's position ids and OpenCLIP's contrastive temperature, which real files hold."""
    _, dtype = next(iter(headers["text_encoder_2"].values()))
    return {
        f"{CLIP_PREFIX}text_model.embeddings.position_ids": clip_position_ids(headers["text_encoder"]),
        f"{OPEN_CLIP_PREFIX}logit_scale": constant_tensor(
            (), dtype, lambda: torch.tensor(math.log(1 / 0.07))
        ),
    }


ORIGINAL_FILE = OriginalFile(
    "SDXL original single file (SGM layout)",
    parts={
        "unet": (UNET_PREFIX, unet_tensors),
        "text_encoder": (CLIP_PREFIX, clip_tensors),
        "text_encoder_2": (OPEN_CLIP_PREFIX, open_clip_tensors),
        "vae": (VAE_PREFIX, vae_tensors),
    },
    extras=_extras,
)


def _write_synthetic(pipeline_folder: Path, out_file: Path) -> Path:
    return write_original_file(ORIGINAL_FILE, pipeline_folder, out_file)


SINGLE_FILE = SingleFileFormat(
    Recognizer("an SDXL base checkpoint (SGM layout)", has_prefix(OPEN_CLIP_PREFIX), "sdxl"),
    write_synthetic=_write_synthetic,
)
REFINER = Recognizer("an SDXL refiner checkpoint (SGM layout)", has_prefix(REFINER_MARKER))

__all__ = [
    "AUTOENCODER_LAYOUT",
    "ORIGINAL_FILE",
    "REFINER",
    "SINGLE_FILE",
    "TEXT_ENCODER_LAYOUT",
    "UNET_LAYOUT",
]

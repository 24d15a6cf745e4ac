"""Stable Diffusion 1.5: declared conversions (`sd15.unet`, `sd15.text_encoder`, `sd15.autoencoder`)."""

from __future__ import annotations

from converters.components import autoencoder_conversion
from converters.declaration import PinnedFile
from zoo.foundationals.latent_diffusion.autoencoder import AutoencoderConfig

PIPELINE_CLASS = "StableDiffusionPipeline"
HUB_REPO = "stable-diffusion-v1-5/stable-diffusion-v1-5"
LICENSE = "creativeml-openrail-m"
REVISION = "f03de327dd89b501a01da37fc5240cf4fdba85a1"

AUTOENCODER = autoencoder_conversion(
    "sd15.autoencoder",
    HUB_REPO,
    LICENSE,
    AutoencoderConfig.sd15(),
    pinned=PinnedFile(
        HUB_REPO,
        "vae/diffusion_pytorch_model.safetensors",
        REVISION,
        "a2b5134f4dbc140d9c11f11cba3233099e00af40f262f136c691fb7d38d2194c",
        license=LICENSE,
    ),
)

CONVERSIONS = (AUTOENCODER,)

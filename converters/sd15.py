"""Stable Diffusion 1.5: declared conversions (`sd15.unet`, `sd15.text_encoder`, `sd15.autoencoder`)."""

from __future__ import annotations

from converters.components import autoencoder_conversion, sd15_text_encoder_conversion, unet_conversion
from converters.declaration import PinnedFile
from converters.single_file_layouts import (
    SD15_AUTOENCODER_LAYOUT,
    SD15_TEXT_ENCODER_LAYOUT,
    SD15_UNET_LAYOUT,
)
from converters.tiny_configs import TINY
from zoo.foundationals.latent_diffusion.autoencoder import AutoencoderConfig
from zoo.foundationals.latent_diffusion.unet import UNetConfig

PIPELINE_CLASS = "StableDiffusionPipeline"
HUB_REPO = "stable-diffusion-v1-5/stable-diffusion-v1-5"
LICENSE = "creativeml-openrail-m"
REVISION = "f03de327dd89b501a01da37fc5240cf4fdba85a1"

UNET = unet_conversion(
    "sd15.unet",
    HUB_REPO,
    LICENSE,
    UNetConfig.sd15(),
    TINY["sd15"],
    single_file=SD15_UNET_LAYOUT,
    pinned=PinnedFile(
        HUB_REPO,
        "unet/diffusion_pytorch_model.safetensors",
        REVISION,
        "19da7aaa4b880e59d56843f1fcb4dd9b599c28a1d9d9af7c1143057c8ffae9f1",
        license=LICENSE,
    ),
)

AUTOENCODER = autoencoder_conversion(
    "sd15.autoencoder",
    HUB_REPO,
    LICENSE,
    AutoencoderConfig.sd15(),
    TINY["sd15"],
    single_file=SD15_AUTOENCODER_LAYOUT,
    pinned=PinnedFile(
        HUB_REPO,
        "vae/diffusion_pytorch_model.safetensors",
        REVISION,
        "a2b5134f4dbc140d9c11f11cba3233099e00af40f262f136c691fb7d38d2194c",
        license=LICENSE,
    ),
)

TEXT_ENCODER = sd15_text_encoder_conversion(
    "sd15.text_encoder",
    HUB_REPO,
    LICENSE,
    TINY["sd15"],
    single_file=SD15_TEXT_ENCODER_LAYOUT,
    pinned=PinnedFile(
        HUB_REPO,
        "text_encoder/model.safetensors",
        REVISION,
        "d008943c017f0092921106440254dbbe00b6a285f7883ec8ba160c3faad88334",
        license=LICENSE,
    ),
)

CONVERSIONS = (UNET, TEXT_ENCODER, AUTOENCODER)

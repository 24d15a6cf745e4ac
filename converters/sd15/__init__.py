"""Stable Diffusion 1.5: `sd15.unet`, `sd15.text_encoder` (CLIP-L) and `sd15.autoencoder`.

Upstream: https://huggingface.co/stable-diffusion-v1-5/stable-diffusion-v1-5 (CreativeML Open RAIL-M).
"""

from __future__ import annotations

from converters.declaration import PinnedFile
from converters.family import Family, Recognizer
from converters.registry import register
from converters.sd15.original import AUTOENCODER_LAYOUT, SD2, SINGLE_FILE, TEXT_ENCODER_LAYOUT, UNET_LAYOUT
from converters.sd15.scheduler import SCHEDULER
from converters.sd15.tiny import TINY
from converters.stable_diffusion import recognizers as looks
from converters.stable_diffusion.conversions import (
    autoencoder_conversion,
    sd15_text_encoder_conversion,
    unet_conversion,
)
from zoo.foundationals.latent_diffusion.autoencoder import AutoencoderConfig
from zoo.foundationals.latent_diffusion.unet import UNetConfig

HUB_REPO = "stable-diffusion-v1-5/stable-diffusion-v1-5"
LICENSE = "creativeml-openrail-m"
REVISION = "f03de327dd89b501a01da37fc5240cf4fdba85a1"

UNET = unet_conversion(
    "sd15.unet",
    HUB_REPO,
    LICENSE,
    UNetConfig.sd15(),
    TINY,
    single_file=UNET_LAYOUT,
    scheduler=SCHEDULER,
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
    TINY,
    single_file=AUTOENCODER_LAYOUT,
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
    TINY,
    single_file=TEXT_ENCODER_LAYOUT,
    pinned=PinnedFile(
        HUB_REPO,
        "text_encoder/model.safetensors",
        REVISION,
        "d008943c017f0092921106440254dbbe00b6a285f7883ec8ba160c3faad88334",
        license=LICENSE,
    ),
)

FAMILY = register(
    Family(
        name="sd15",
        description="Stable Diffusion 1.5: UNet, CLIP-L text encoder, autoencoder",
        conversions=(UNET, TEXT_ENCODER, AUTOENCODER),
        pipeline_class="StableDiffusionPipeline",
        single_file=SINGLE_FILE,
        recognizers=(
            SD2,
            Recognizer(
                "an SD 1.x UNet (diffusers layout)",
                lambda s: (
                    looks.diffusers_unet(s)
                    and looks.cross_attention_at_first_level(s)
                    and not looks.with_added_conditioning(s)
                ),
                "sd15.unet",
            ),
            Recognizer(
                "a CLIP-L text encoder (transformers layout; also SDXL's first tower)",
                looks.clip_text_tower(768),
                "sd15.text_encoder",
            ),
            *looks.GENERIC,
        ),
        lora_parts=("unet", "text_encoder"),
    )
)

__all__ = ["AUTOENCODER", "FAMILY", "TEXT_ENCODER", "UNET"]

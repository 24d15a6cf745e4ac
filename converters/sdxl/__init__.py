"""Stable Diffusion XL base 1.0: `sdxl.unet`, `sdxl.text_encoder` (CLIP-L + OpenCLIP bigG) and
`sdxl.autoencoder`, plus the fp16-fix autoencoder variant.

Upstream: https://huggingface.co/stabilityai/stable-diffusion-xl-base-1.0 (CreativeML Open RAIL++-M).
"""

from __future__ import annotations

from converters.declaration import PinnedFile
from converters.family import Family, Recognizer
from converters.registry import register
from converters.sdxl.original import (
    AUTOENCODER_LAYOUT,
    REFINER,
    SINGLE_FILE,
    TEXT_ENCODER_LAYOUT,
    UNET_LAYOUT,
)
from converters.sdxl.scheduler import SCHEDULER
from converters.sdxl.tiny import TINY
from converters.stable_diffusion import recognizers as looks
from converters.stable_diffusion.conversions import (
    autoencoder_conversion,
    sdxl_text_encoder_conversion,
    unet_conversion,
)
from zoo.foundationals.latent_diffusion.autoencoder import AutoencoderConfig
from zoo.foundationals.latent_diffusion.unet import UNetConfig

HUB_REPO = "stabilityai/stable-diffusion-xl-base-1.0"
LICENSE = "openrail++"
UNKNOWN_TEXT_ENCODER = "not pinned yet: record revision and sha256 on a machine with Hub access"
FP16_FIX_REPO = "madebyollin/sdxl-vae-fp16-fix"

UNET = unet_conversion(
    "sdxl.unet",
    HUB_REPO,
    LICENSE,
    UNetConfig.sdxl(),
    TINY,
    single_file=UNET_LAYOUT,
    scheduler=SCHEDULER,
    pinned=PinnedFile(
        HUB_REPO,
        "unet/diffusion_pytorch_model.safetensors",
        "76d28af79639c28a79fa5c6c6468febd3490a37e",
        "357650fbfb3c7b4d94c1f5fd7664da819ad1ff5a839430484b4ec422d03f710a",
        license=LICENSE,
    ),
)

TEXT_ENCODER = sdxl_text_encoder_conversion(
    "sdxl.text_encoder",
    HUB_REPO,
    LICENSE,
    TINY,
    single_file=TEXT_ENCODER_LAYOUT,
    pinned=(
        PinnedFile(
            HUB_REPO, "text_encoder/model.safetensors", None, None, None, LICENSE, UNKNOWN_TEXT_ENCODER
        ),
        PinnedFile(
            HUB_REPO, "text_encoder_2/model.safetensors", None, None, None, LICENSE, UNKNOWN_TEXT_ENCODER
        ),
    ),
)

AUTOENCODER = autoencoder_conversion(
    "sdxl.autoencoder",
    HUB_REPO,
    LICENSE,
    AutoencoderConfig.sdxl(),
    TINY,
    single_file=AUTOENCODER_LAYOUT,
    pinned=PinnedFile(
        HUB_REPO,
        "vae/diffusion_pytorch_model.safetensors",
        "91704abbae38a0e1f60d433fb08d7f7d99081d21",
        "1598f3d24932bcfe6634e8b618ea1e30ab1d57f5aad13a6d2de446d2199f2341",
        license=LICENSE,
    ),
    fp16_warning=(
        "the SDXL VAE's weights fit in float16 but its activations overflow there at run time: "
        "run it in float32/bfloat16, or convert the fp16-fix variant (sdxl.autoencoder_fp16_fix, "
        "madebyollin/sdxl-vae-fp16-fix)"
    ),
)

AUTOENCODER_FP16_FIX = autoencoder_conversion(
    "sdxl.autoencoder_fp16_fix",
    FP16_FIX_REPO,
    "mit",
    AutoencoderConfig.sdxl(),
    TINY,
    pinned=PinnedFile(
        FP16_FIX_REPO,
        "diffusion_pytorch_model.safetensors",
        "6d1073461cd0b5a6ea4fda10b812e3d9d58a8330",
        "1b909373b28f2137098b0fd9dbc6f97f8410854f31f84ddc9fa04b077b0ace2c",
        license="mit",
    ),
    repo_folder="",
)

FAMILY = register(
    Family(
        name="sdxl",
        description="Stable Diffusion XL base 1.0: UNet, CLIP-L + OpenCLIP bigG text encoders, autoencoder",
        conversions=(UNET, TEXT_ENCODER, AUTOENCODER),
        variants=(AUTOENCODER_FP16_FIX,),
        pipeline_class="StableDiffusionXLPipeline",
        single_file=SINGLE_FILE,
        recognizers=(
            REFINER,
            Recognizer(
                "an SDXL UNet (diffusers layout)",
                lambda s: looks.diffusers_unet(s) and looks.with_added_conditioning(s),
                "sdxl.unet",
            ),
            Recognizer(
                "an OpenCLIP bigG text encoder with projection (transformers layout; SDXL's second tower)",
                looks.clip_text_tower(1280),
                "sdxl.text_encoder",
            ),
            *looks.GENERIC,
        ),
        lora_parts=("unet", "text_encoder", "text_encoder_2"),
    )
)

__all__ = ["AUTOENCODER", "AUTOENCODER_FP16_FIX", "FAMILY", "TEXT_ENCODER", "UNET"]

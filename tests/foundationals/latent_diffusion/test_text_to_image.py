"""Text to image against diffusers' own pipelines: the same final latents and image for the same seed.

Tiny SD 1.5 and SDXL pipelines are built with diffusers' and transformers' classes, CLIP's real
vocabulary (shipped offline in open-clip-torch) and the families' real scheduler configs, saved with
the pipeline's own `save_pretrained`, converted with `zoo convert`, and loaded back with
`load_stable_diffusion`. Each solver runs with and without classifier-free guidance (and a negative
prompt), and with a LoRA in the UNet; latents must agree to 1e-4 relative, images to 1/255.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from foundationals.clip_vocab import BANG_PAD, END_PAD, write_clip_tokenizer  # pyright: ignore[reportMissingImports]

from converters._convert.by_name import convert
from converters.lora import load_lora
from converters.sd15.scheduler import SCHEDULER as SD15_SCHEDULER
from converters.sd15.tiny import TINY as SD15_TINY
from converters.sdxl.scheduler import SCHEDULER as SDXL_SCHEDULER
from converters.sdxl.tiny import TINY as SDXL_TINY
from zoo.foundationals.latent_diffusion.model import GenerationSettings, StableDiffusion
from zoo.text_to_image import load_stable_diffusion

LATENT_LIMIT = 1e-4  # relative, float32, on the final latents
PIXEL_LIMIT = 1 / 255
SIZE = 64  # pixels per side: 32×32 latents with the tiny two-level autoencoder
STEPS = 4
SQUARE: dict[str, Any] = {"width": SIZE, "height": SIZE}
PROMPT = "a photo of an astronaut riding a horse on the moon"
NEGATIVE = "blurry, low quality"
# The real CLIP vocabulary and 77 positions, so the real tokenizers fit.
TEXT = {"vocab_size": 49408, "max_position_embeddings": 77}


def _solvers() -> dict[str, tuple[Any, dict[str, Any]]]:
    from diffusers import (
        DDIMScheduler,
        DPMSolverMultistepScheduler,
        EulerAncestralDiscreteScheduler,
        EulerDiscreteScheduler,
    )

    return {
        "ddim": (DDIMScheduler, {}),
        "euler": (EulerDiscreteScheduler, {}),
        "euler_ancestral": (EulerAncestralDiscreteScheduler, {}),
        "dpmpp_2m": (DPMSolverMultistepScheduler, {"use_karras_sigmas": False}),
        "dpmpp_2m_karras": (DPMSolverMultistepScheduler, {"use_karras_sigmas": True}),
    }


SOLVERS = ["ddim", "euler", "euler_ancestral", "dpmpp_2m", "dpmpp_2m_karras"]


@dataclass
class Pair:
    """diffusers' pipeline, and ours converted from its saved folder."""

    reference: Any
    ours: StableDiffusion
    folder: Path
    scheduler_config: Any  # the saved one: each solver is configured from it, never from the last one


def _text_config(config: dict[str, Any]) -> Any:
    from transformers import CLIPTextConfig

    return CLIPTextConfig.from_dict({**config, **TEXT})


def _sd15(folder: Path) -> Any:
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    pipeline = StableDiffusionPipeline(
        vae=AutoencoderKL(**{k: v for k, v in SD15_TINY["vae"].items()}),
        text_encoder=CLIPTextModel(_text_config(SD15_TINY["text_encoder"])),
        tokenizer=CLIPTokenizer.from_pretrained(
            write_clip_tokenizer(folder / "raw-tokenizer", pad_token=END_PAD)
        ),
        unet=UNet2DConditionModel(**SD15_TINY["unet"]),
        scheduler=PNDMScheduler.from_config(SD15_SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    return pipeline


def _sdxl(folder: Path) -> Any:
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    torch.manual_seed(0)
    return StableDiffusionXLPipeline(
        vae=AutoencoderKL(**SDXL_TINY["vae"]),
        text_encoder=CLIPTextModel(_text_config(SDXL_TINY["text_encoder"])),
        text_encoder_2=CLIPTextModelWithProjection(_text_config(SDXL_TINY["text_encoder_2"])),
        tokenizer=CLIPTokenizer.from_pretrained(
            write_clip_tokenizer(folder / "raw-tokenizer", pad_token=END_PAD)
        ),
        tokenizer_2=CLIPTokenizer.from_pretrained(
            write_clip_tokenizer(folder / "raw-tokenizer-2", pad_token=BANG_PAD)
        ),
        unet=UNet2DConditionModel(**SDXL_TINY["unet"]),
        scheduler=EulerDiscreteScheduler.from_config(SDXL_SCHEDULER),
    )


def _pair(name: str, build: Callable[[Path], Any], root: Path) -> Pair:
    """The reference is the pipeline loaded back from its saved folder: what a diffusers user of those
    files runs (the saved scheduler config is not the one in memory: saving fills in defaults)."""
    from diffusers import DiffusionPipeline
    from diffusers.utils import logging

    logging.disable_progress_bar()
    build(root).save_pretrained(root / "pipeline")
    reference = DiffusionPipeline.from_pretrained(root / "pipeline")
    reference.set_progress_bar_config(disable=True)
    convert(name, out=root / "out", source=str(root / "pipeline"))
    return Pair(reference, load_stable_diffusion(root / "out"), root / "out", reference.scheduler.config)


@pytest.fixture(scope="module", params=["sd15", "sdxl"])
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Pair:
    build = _sd15 if request.param == "sd15" else _sdxl
    return _pair(request.param, build, tmp_path_factory.mktemp(request.param))


def _reference_run(pair: Pair, settings: GenerationSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """diffusers' final latents (kept by a step callback) and image, from one run."""
    scheduler_class, options = _solvers()[settings.solver]
    pair.reference.scheduler = scheduler_class.from_config(pair.scheduler_config, **options)
    kept: list[torch.Tensor] = []

    def keep(_pipeline: Any, _step: int, _timestep: Any, values: dict[str, Any]) -> dict[str, Any]:
        kept.append(values["latents"].clone())
        return values

    result = pair.reference(
        prompt=settings.prompt,
        negative_prompt=settings.negative_prompt,
        num_inference_steps=settings.steps,
        guidance_scale=settings.guidance,
        height=settings.height,
        width=settings.width,
        generator=torch.Generator().manual_seed(settings.seed),
        output_type="pt",
        callback_on_step_end=keep,
    )
    return kept[-1], result.images


def _relative(ours: torch.Tensor, reference: torch.Tensor) -> float:
    return ((ours.double() - reference.double()).abs().max() / reference.double().abs().max()).item()


def _check(pair: Pair, settings: GenerationSettings) -> None:
    latents, image = _reference_run(pair, settings)
    generated = pair.ours.generate(settings)
    latent_error = _relative(generated.latents, latents)
    pixel_error = (generated.image - image).abs().max().item()
    print(
        f"{settings.solver} guidance {settings.guidance}: latents {latent_error:.2e}, pixels {pixel_error:.2e}"
    )
    assert latent_error <= LATENT_LIMIT
    assert pixel_error <= PIXEL_LIMIT


@pytest.mark.parametrize("solver", SOLVERS)
def test_guided_with_a_negative_prompt(pair: Pair, solver: str) -> None:
    settings = GenerationSettings(
        PROMPT, NEGATIVE, seed=3, steps=STEPS, solver=solver, guidance=6.0, **SQUARE
    )
    _check(pair, settings)


@pytest.mark.parametrize("solver", SOLVERS)
def test_without_guidance(pair: Pair, solver: str) -> None:
    _check(pair, GenerationSettings(PROMPT, seed=5, steps=STEPS, solver=solver, guidance=1.0, **SQUARE))


def test_guided_without_a_negative_prompt(pair: Pair) -> None:
    """SDXL: zeros for the absent negative prompt; SD 1.5: the empty prompt."""
    _check(
        pair, GenerationSettings(PROMPT, None, seed=7, steps=STEPS, solver="euler", guidance=5.0, **SQUARE)
    )


def test_with_a_lora_in_the_unet(pair: Pair, tmp_path: Path) -> None:
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(11)
    targets = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out"]
    config = LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False)
    pair.reference.unet.add_adapter(config, adapter_name="style")
    try:
        layers = get_peft_model_state_dict(pair.reference.unet, adapter_name="style")
        metadata = config.to_dict()  # the alphas, which the weights alone do not carry
        type(pair.reference).save_lora_weights(
            tmp_path, unet_lora_layers=layers, unet_lora_adapter_metadata=metadata
        )
        load_lora(pair.ours.unet, tmp_path / "pytorch_lora_weights.safetensors", name="style")
        settings = GenerationSettings(
            PROMPT, NEGATIVE, seed=13, steps=STEPS, solver="dpmpp_2m", guidance=6.0, **SQUARE
        )
        _check(pair, settings)
    finally:
        pair.reference.unet.delete_adapters("style")
        from zoo.lora import eject_loras

        eject_loras(pair.ours.unet)

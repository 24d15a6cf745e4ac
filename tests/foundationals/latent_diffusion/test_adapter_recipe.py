"""The adapter recipe on one tiny SDXL model: a LoRA, an IP-Adapter, a T2I-Adapter and a ControlNet
injected together.

- the UNet output equals diffusers' UNet2DConditionModel with the same LoRA (PEFT), IP-Adapter (loaded
  by diffusers' own loader from the original file), the ControlNet's residuals and the T2I-Adapter's
  `down_intrablock_additional_residuals`;
- short generations equal diffusers' SDXL ControlNet pipeline (LoRA + IP-Adapter + ControlNet, with a
  guidance step range) and SDXL adapter pipeline (LoRA + IP-Adapter + T2I-Adapter, with a conditioning
  factor): latents within 1e-4 relative, images within 1/255 (diffusers has no pipeline with a
  ControlNet and a T2I-Adapter at once);
- ejecting the four in every order restores the UNet bit for bit.

The models are tiny: the autoencoder halves the image, so the ControlNet's condition encoder and the
T2I-Adapter are built to halve (not divide by 8) too, as real ones match SD's autoencoders.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import torch
from foundationals.control_pairs import converted, randomize, relative_error  # pyright: ignore[reportMissingImports]
from foundationals.latent_diffusion.test_text_to_image import (  # pyright: ignore[reportMissingImports]
    NEGATIVE,
    PROMPT,
    SQUARE,
    Pair,
    _pair,  # pyright: ignore[reportPrivateUsage]
    _relative,  # pyright: ignore[reportPrivateUsage]
    _sdxl,  # pyright: ignore[reportPrivateUsage]
)

import zoo
from converters.controlnet.upstream import tiny_controlnet_config
from converters.ip_adapter import CONVERSIONS as IP_ADAPTERS
from converters.ip_adapter.convert import convert_ip_adapter
from converters.ip_adapter.original_writer import original_state_dicts, write_original_bin
from converters.ip_adapter.reference import SUBFOLDER, build_reference
from converters.lora import map_lora, model_base, read_lora
from converters.sdxl.tiny import TINY as SDXL_TINY
from converters.stable_diffusion.unet import unet_example_inputs
from zoo.foundationals.controlnet.adapter import ControlNetAdapter
from zoo.foundationals.latent_diffusion.model import GenerationSettings
from zoo.foundationals.t2i_adapter.injection import T2IAdapterInjection
from zoo.lora import eject_loras, inject_lora

UNET_LIMIT = 1e-5
LATENT_LIMIT = 1e-4
PIXEL_LIMIT = 1 / 255
STEPS = 4
CONTROL_SCALE, ADAPTER_SCALE, IMAGE_PROMPT_SCALE = 0.8, 0.6, 0.7
GUIDANCE_RANGE = (0.0, 0.75)
ADAPTER_FACTOR = 0.5
PIXELS = SQUARE["width"]
LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out"]
KINDS = ("lora", "ip_adapter", "adapter", "controlnet")


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from diffusers.models.adapter import T2IAdapter
    from diffusers.models.controlnets.controlnet import ControlNetModel

    root = tmp_path_factory.mktemp("recipe")
    pair = _pair("sdxl", _sdxl, root)
    _add_lora(pair, root)
    torch.manual_seed(21)
    config: dict[str, Any] = tiny_controlnet_config(SDXL_TINY["unet"]) | {
        "conditioning_embedding_out_channels": [8, 16]
    }
    controlnet = ControlNetModel(**config)
    randomize(controlnet, 21)
    adapter = T2IAdapter(
        channels=[64, 128, 128, 128], num_res_blocks=2, downscale_factor=4, adapter_type="full_adapter_xl"
    )
    randomize(adapter, 22)
    generator = torch.Generator().manual_seed(23)
    image_prompt = _add_ip_adapter(pair, root)
    return {
        "pair": pair,
        "ip_adapter": image_prompt,
        "image_feature": torch.randn(1, image_prompt.config.image_embedding_dim, generator=generator),
        "controlnet": (controlnet, converted(controlnet, "controlnet.sdxl", "controlnet", root / "cn")),
        "adapter": (adapter, converted(adapter, "t2i_adapter.sdxl", "adapter", root / "t2i")),
        "image": torch.rand(1, 3, PIXELS, PIXELS, generator=generator),
        "lora": _lora_weights(pair, root / "lora" / "pytorch_lora_weights.safetensors"),
    }


def _lora_weights(pair: Pair, file: Path) -> dict[str, torch.Tensor]:
    """The LoRA placed on our UNet once (what `load_lora` injects), so each test injects it fast."""
    base = model_base(pair.ours.unet)
    return map_lora(read_lora(file), base, components=base.lora_components).weights(base.models[0].component)


def _add_lora(pair: Pair, root: Path) -> None:
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(11)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=LORA_TARGETS, init_lora_weights=False)
    pair.reference.unet.add_adapter(config, adapter_name="style")
    layers = get_peft_model_state_dict(pair.reference.unet, adapter_name="style")
    type(pair.reference).save_lora_weights(
        root / "lora", unet_lora_layers=layers, unet_lora_adapter_metadata=config.to_dict()
    )


def _add_ip_adapter(pair: Pair, root: Path) -> Any:
    """A tiny SDXL IP-Adapter in its original file layout: diffusers' loader puts it into the reference
    UNet (after the LoRA, as a user loads them), `zoo convert ip-adapter` converts it for ours."""
    from diffusers.models.attention_processor import IPAdapterAttnProcessor2_0

    torch.manual_seed(24)
    build_reference(IP_ADAPTERS["sdxl"].synthetic_configs("tiny")[SUBFOLDER]).save_pretrained(root / "ip")  # pyright: ignore[reportCallIssue]
    unet = pair.reference.unet
    unet._load_ip_adapter_weights([original_state_dicts(root / "ip")], low_cpu_mem_usage=False)
    for processor in unet.attn_processors.values():
        if isinstance(processor, IPAdapterAttnProcessor2_0):
            processor.scale = [IMAGE_PROMPT_SCALE]
    file = write_original_bin(root / "ip", root / "ip_adapter_sdxl.bin")
    converted = convert_ip_adapter(file, pair.folder / "sdxl.unet", out=root / "ip_out")
    return zoo.load(converted.result.folder)


def _guided_feature(recipe: dict[str, Any]) -> torch.Tensor:
    """[negative, positive] image features, the negative zeros as diffusers' pipelines make it."""
    return torch.cat([torch.zeros_like(recipe["image_feature"]), recipe["image_feature"]])


def _inject_all(
    recipe: dict[str, Any], order: tuple[str, ...] = KINDS, image_feature: torch.Tensor | None = None
) -> dict[str, Any]:
    unet = recipe["pair"].ours.unet
    injected: dict[str, Any] = {}
    for kind in order:
        if kind == "lora":
            inject_lora(unet, "style", recipe["lora"], 1.0)
            injected[kind] = None
        elif kind == "ip_adapter":
            injected[kind] = recipe["ip_adapter"].inject(unet)
            injected[kind].scale = IMAGE_PROMPT_SCALE
            injected[kind].set_image_embedding(
                _guided_feature(recipe) if image_feature is None else image_feature
            )
        elif kind == "adapter":
            injected[kind] = T2IAdapterInjection(unet, recipe["adapter"][1], scale=ADAPTER_SCALE).inject()
            with torch.no_grad():
                injected[kind].set_condition(recipe["image"])
        else:
            start, end = GUIDANCE_RANGE
            injected[kind] = ControlNetAdapter(
                unet, recipe["controlnet"][1], scale=CONTROL_SCALE, start=start, end=end
            ).inject()
            injected[kind].set_condition(recipe["image"])
    return injected


def _eject(recipe: dict[str, Any], injected: dict[str, Any], order: tuple[str, ...]) -> None:
    for kind in order:
        if kind == "lora":
            eject_loras(recipe["pair"].ours.unet)
        else:
            injected[kind].eject()


def test_the_unet_output_with_all_adapters_equals_diffusers(recipe: dict[str, Any]) -> None:
    unet, reference_unet = recipe["pair"].ours.unet, recipe["pair"].reference.unet
    inputs = unet_example_inputs(unet.config, batch_size=2, latent_size=PIXELS // 2, text_length=77, seed=9)
    added: dict[str, Any] = {"text_embeds": inputs.pooled_text_embedding, "time_ids": inputs.time_ids}
    condition = recipe["image"].expand(2, -1, -1, -1)
    feature = torch.randn(
        2, 1, recipe["ip_adapter"].config.image_embedding_dim, generator=torch.Generator().manual_seed(8)
    )
    with torch.no_grad():
        down, middle = recipe["controlnet"][0](
            inputs.latents, inputs.timestep, encoder_hidden_states=inputs.text_embedding,
            controlnet_cond=condition, conditioning_scale=CONTROL_SCALE, added_cond_kwargs=added, return_dict=False,
        )  # fmt: skip
        features = [f * ADAPTER_SCALE for f in recipe["adapter"][0](recipe["image"])]
        added["image_embeds"] = [feature]
        expected = reference_unet(
            inputs.latents, inputs.timestep, encoder_hidden_states=inputs.text_embedding, added_cond_kwargs=added,
            down_block_additional_residuals=down, mid_block_additional_residual=middle,
            down_intrablock_additional_residuals=[f.repeat(2, 1, 1, 1) for f in features], return_dict=False,
        )[0]  # fmt: skip
    injected = _inject_all(recipe, image_feature=feature)
    try:
        with torch.no_grad():
            ours = inputs.run_target(unet)
    finally:
        _eject(recipe, injected, tuple(reversed(KINDS)))
    error = relative_error(ours, expected)
    print(f"UNet with LoRA + IP-Adapter + T2I-Adapter + ControlNet: relative error {error:.2e}")
    assert error <= UNET_LIMIT
    with torch.no_grad():
        plain = inputs.run_target(unet)
    assert relative_error(plain, expected) > 1e-3, "the adapters changed nothing: the test cannot fail"


def _settings(seed: int) -> GenerationSettings:
    return GenerationSettings(
        PROMPT, NEGATIVE, seed=seed, steps=STEPS, solver="euler", guidance=6.0, **SQUARE
    )


def _reference_images(
    pipeline: Any, settings: GenerationSettings, image_feature: torch.Tensor, **control: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """diffusers' final latents (kept by a step callback, old or new style) and image."""
    kept: list[torch.Tensor] = []

    def keep(_pipeline: Any, _step: int, _timestep: Any, values: dict[str, Any]) -> dict[str, Any]:
        kept.append(values["latents"].clone())
        return values

    def keep_old(_step: int, _timestep: Any, latents: torch.Tensor) -> None:
        kept.append(latents.clone())

    # The adapter pipeline has only the older callback.
    if "adapter_conditioning_scale" in control:
        control |= {"callback": keep_old, "callback_steps": 1}
    else:
        control |= {"callback_on_step_end": keep}
    result = pipeline(
        prompt=settings.prompt, negative_prompt=settings.negative_prompt, num_inference_steps=settings.steps,
        guidance_scale=settings.guidance, height=settings.height, width=settings.width,
        generator=torch.Generator().manual_seed(settings.seed), output_type="pt",
        ip_adapter_image_embeds=[image_feature[:, None]], **control,
    )  # fmt: skip
    return kept[-1], result.images


def _components(recipe: dict[str, Any]) -> dict[str, Any]:
    reference = recipe["pair"].reference
    names = ("vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "unet", "scheduler")
    return {name: getattr(reference, name) for name in names}


def _compare(
    recipe: dict[str, Any],
    kind: str,
    reference: tuple[torch.Tensor, torch.Tensor],
    settings: GenerationSettings,
) -> None:
    injected = _inject_all(recipe, ("lora", "ip_adapter", kind))
    if kind == "adapter":  # diffusers' adapter_conditioning_factor
        injected[kind].state.end = ADAPTER_FACTOR
    try:
        generated = recipe["pair"].ours.generate(settings)
    finally:
        _eject(recipe, injected, (kind, "ip_adapter", "lora"))
    latent_error = _relative(generated.latents, reference[0])
    pixel_error = (generated.image - reference[1]).abs().max().item()
    print(f"LoRA + IP-Adapter + {kind}: latents {latent_error:.2e}, pixels {pixel_error:.2e}")
    assert latent_error <= LATENT_LIMIT and pixel_error <= PIXEL_LIMIT


def test_a_generation_with_a_lora_an_ip_adapter_and_a_controlnet_equals_diffusers(
    recipe: dict[str, Any],
) -> None:
    from diffusers.pipelines.controlnet.pipeline_controlnet_sd_xl import StableDiffusionXLControlNetPipeline

    pipeline = StableDiffusionXLControlNetPipeline(**_components(recipe), controlnet=recipe["controlnet"][0])
    pipeline.set_progress_bar_config(disable=True)
    settings = _settings(31)
    start, end = GUIDANCE_RANGE
    reference = _reference_images(
        pipeline, settings, _guided_feature(recipe), image=recipe["image"], controlnet_conditioning_scale=CONTROL_SCALE,
        control_guidance_start=start, control_guidance_end=end,
    )  # fmt: skip
    _compare(recipe, "controlnet", reference, settings)


def test_a_generation_with_a_lora_an_ip_adapter_and_a_t2i_adapter_equals_diffusers(
    recipe: dict[str, Any],
) -> None:
    from diffusers.pipelines.t2i_adapter.pipeline_stable_diffusion_xl_adapter import (
        StableDiffusionXLAdapterPipeline,
    )

    pipeline = StableDiffusionXLAdapterPipeline(**_components(recipe), adapter=recipe["adapter"][0])
    pipeline.set_progress_bar_config(disable=True)
    settings = _settings(33)
    reference = _reference_images(
        pipeline, settings, _guided_feature(recipe), image=recipe["image"], adapter_conditioning_scale=ADAPTER_SCALE,
        adapter_conditioning_factor=ADAPTER_FACTOR,
    )  # fmt: skip
    _compare(recipe, "adapter", reference, settings)


ORDERS = list(itertools.permutations(KINDS))


@pytest.mark.parametrize("order", ORDERS, ids=["-".join(order) for order in ORDERS])
def test_ejecting_in_every_order_restores_the_unet_bit_for_bit(
    recipe: dict[str, Any], order: tuple[str, ...]
) -> None:
    unet = recipe["pair"].ours.unet
    inputs = unet_example_inputs(unet.config, latent_size=PIXELS // 2, text_length=77, seed=2)
    before = {key: value.clone() for key, value in unet.state_dict().items()}
    before_repr = repr(unet)
    with torch.no_grad():
        before_output = inputs.run_target(unet)
    injected = _inject_all(recipe)
    _eject(recipe, injected, order)
    after = unet.state_dict()
    assert repr(unet) == before_repr and after.keys() == before.keys()
    assert all(torch.equal(after[key], before[key]) for key in after)
    with torch.no_grad():
        assert torch.equal(inputs.run_target(unet), before_output)

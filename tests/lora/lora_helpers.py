"""Helpers for the LoRA tests: tiny SD 1.5 / SDXL bases and LoRAs built with the real tools (peft, diffusers), for the LoRA tests.

The bases come from `converters._convert.by_name.convert(family, synthetic="tiny")`: a diffusers pipeline folder
(the upstream reference) and our converted outputs. LoRAs are made by peft on the upstream models
(`unet.add_adapter`; `inject_adapter_in_model` for CLIP, as transformers' own `add_adapter` refuses
peft < 0.22), saved by diffusers (`save_lora_weights`) or peft (`save_pretrained`), and turned into
kohya files by diffusers' `convert_state_dict_to_kohya`; SGM-named kohya and LoCon files are built by
hand. Every reference model is the upstream model with the same LoRA, as peft or diffusers load it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn
from torch.utils._pytree import tree_leaves

import zoo
from converters import registry
from converters._verify.parity import relative_error

UNET_TARGETS = [
    "to_q",
    "to_k",
    "to_v",
    "to_out.0",
    "proj_in",
    "proj_out",
    "ff.net.0.proj",
    "ff.net.2",
    "conv1",
    "conv2",
    "conv_shortcut",
    "time_emb_proj",
]
# Without the 3×3 convolutions: a plain kohya LoRA (with them, kohya keys make a LoCon file).
UNET_POINTWISE_TARGETS = [target for target in UNET_TARGETS if target not in ("conv1", "conv2")]
TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]
TOLERANCE = 1e-5


@dataclass(frozen=True)
class TinyFamily:
    """A converted tiny family: our outputs in `out`, the upstream pipeline in `source`."""

    family: str
    out: Path
    source: Path

    def conversion(self, component: str) -> Any:
        return registry.resolve(f"{self.family}.{component}")[0]

    def ours(self, component: str) -> Any:
        return zoo.load(str(self.out / f"{self.family}.{component}"))

    def upstream(self, component: str) -> Any:
        """The upstream model(s) with the source's weights: a UNet, or the text tower(s)."""
        if component == "unet":
            from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel

            return UNet2DConditionModel.from_pretrained(self.source / "unet").eval()
        from transformers import CLIPTextModel, CLIPTextModelWithProjection

        towers: dict[str, nn.Module] = {
            "text_encoder": CLIPTextModel.from_pretrained(self.source / "text_encoder")
        }
        if self.family == "sdxl":
            towers["text_encoder_2"] = CLIPTextModelWithProjection.from_pretrained(
                self.source / "text_encoder_2"
            )
        return nn.ModuleDict(towers).eval()

    def run(self, component: str, model: nn.Module, upstream: bool) -> list[torch.Tensor]:
        """Outputs on the conversion's seeded example inputs."""
        conversion = self.conversion(component)
        config = conversion.derive_config(self.configs(component))
        inputs = conversion.example_inputs(config, "cpu", torch.float32)
        if upstream and component == "text_encoder" and self.family == "sd15":
            model = model["text_encoder"]  # pyright: ignore[reportIndexIssue]
        runner = conversion.run_upstream if upstream else conversion.run_target
        with torch.no_grad():
            return [
                t.detach().clone() for t in tree_leaves(runner(model, inputs)) if isinstance(t, torch.Tensor)
            ]

    def configs(self, component: str) -> dict[str, Any]:
        from converters._convert.sources import resolve_source

        return resolve_source(self.conversion(component), self.source).configs  # pyright: ignore[reportAttributeAccessIssue]


# -- comparing ----------------------------------------------------------------------------------------


def max_relative_error(ours: list[torch.Tensor], reference: list[torch.Tensor]) -> float:
    assert len(ours) == len(reference)
    return max(relative_error(a, b) for a, b in zip(ours, reference, strict=True))


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {key: tensor.detach().clone() for key, tensor in model.state_dict().items()}


def same_bits(model: nn.Module, before: Mapping[str, torch.Tensor]) -> bool:
    now = model.state_dict()
    return set(now) == set(before) and all(torch.equal(now[key], before[key]) for key in before)


# -- building LoRAs with peft -------------------------------------------------------------------------


def lora_config(rank: int, alpha: int, targets: list[str]) -> Any:
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets, init_lora_weights=False)


def add_unet_lora(
    unet: nn.Module,
    seed: int,
    rank: int = 4,
    alpha: int = 8,
    name: str = "default",
    targets: list[str] = UNET_TARGETS,
) -> Any:
    """peft LoRA on a diffusers UNet (random A and B); returns its config."""
    config = lora_config(rank, alpha, targets)
    torch.manual_seed(seed)
    unet.add_adapter(config, adapter_name=name)  # pyright: ignore[reportCallIssue]
    return config


def add_text_lora(towers: nn.ModuleDict, seed: int, rank: int = 4, alpha: int = 8) -> Any:
    """peft LoRA on each CLIP tower (peft's inject_adapter_in_model); returns the config."""
    from peft import inject_adapter_in_model

    config = lora_config(rank, alpha, TEXT_TARGETS)
    torch.manual_seed(seed)
    for name in list(towers.keys()):
        towers[name] = inject_adapter_in_model(config, towers[name])
    return config


def peft_state(model: nn.Module, name: str = "default") -> dict[str, Any]:
    from peft.utils import get_peft_model_state_dict

    return {
        k: v.detach().clone().contiguous()
        for k, v in get_peft_model_state_dict(model, adapter_name=name).items()
    }


@contextmanager
def scaled(model: nn.Module, weight: float) -> Iterator[None]:
    """Scale every peft LoRA layer of `model` (diffusers' helper), then undo it."""
    from diffusers.utils.peft_utils import scale_lora_layers, unscale_lora_layers

    scale_lora_layers(model, weight)
    try:
        yield
    finally:
        unscale_lora_layers(model, weight)


def save_diffusers(
    folder: Path,
    family: str,
    unet: nn.Module | None,
    towers: nn.ModuleDict | None,
    config: Any | None,
    text_config: Any | None = None,
) -> Path:
    """diffusers' `save_lora_weights` (with the adapter settings in the header when configs are given)."""
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline
    from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl import StableDiffusionXLPipeline

    pipeline = StableDiffusionXLPipeline if family == "sdxl" else StableDiffusionPipeline
    layers: dict[str, Any] = {}
    if unet is not None:
        layers["unet_lora_layers"] = peft_state(unet)
        layers["unet_lora_adapter_metadata"] = config.to_dict() if config else None
    for tower in towers.keys() if towers is not None else ():
        layers[f"{tower}_lora_layers"] = peft_state(towers[tower])  # pyright: ignore[reportOptionalSubscript]
        layers[f"{tower}_lora_adapter_metadata"] = text_config.to_dict() if text_config else None
    pipeline.save_lora_weights(folder, **layers)
    return folder / "pytorch_lora_weights.safetensors"


def diffusers_prefixed(
    unet: nn.Module | None, towers: nn.ModuleDict | None, text_model: bool
) -> dict[str, torch.Tensor]:
    """PEFT state dicts with `unet.` / `text_encoder.` / `text_encoder_2.` prefixes (what kohya conversion takes).

    With `text_model`, CLIP-L's keys get the `text_model.` prefix real files have (transformers 5 drops it).
    """
    state: dict[str, torch.Tensor] = {}
    if unet is not None:
        state.update({f"unet.{k}": v for k, v in peft_state(unet).items()})
    for tower in towers.keys() if towers is not None else ():
        prefix = "text_model." if text_model and tower == "text_encoder" else ""
        state.update({f"{tower}.{prefix}{k}": v for k, v in peft_state(towers[tower]).items()})  # pyright: ignore[reportOptionalSubscript]
    return state


def save_kohya(path: Path, prefixed: dict[str, torch.Tensor], alpha: float) -> Path:
    """diffusers' PEFT -> kohya conversion; alphas set to the trainer's (diffusers writes the rank)."""
    from diffusers.utils.state_dict_utils import convert_state_dict_to_kohya

    kohya = convert_state_dict_to_kohya(prefixed)
    kohya = {k: torch.tensor(float(alpha)) if k.endswith(".alpha") else v for k, v in kohya.items()}
    save_file({k: v.contiguous() for k, v in kohya.items()}, path)
    return path


# -- hand-built kohya files with SGM block names ------------------------------------------------------

# Tiny SDXL (layers_per_block 1; level 0: 32 channels, no attention; level 1: 64 channels, depth 2):
# SGM/LDM names -> the diffusers module each one means.
SGM_TINY_SDXL = {
    "time_embed_0": "time_embedding.linear_1",
    "label_emb_0_2": "add_embedding.linear_2",
    "input_blocks_1_0_emb_layers_1": "down_blocks.0.resnets.0.time_emb_proj",
    "input_blocks_3_0_skip_connection": "down_blocks.1.resnets.0.conv_shortcut",
    "input_blocks_3_1_proj_in": "down_blocks.1.attentions.0.proj_in",
    "input_blocks_3_1_transformer_blocks_1_attn1_to_q": "down_blocks.1.attentions.0.transformer_blocks.1.attn1.to_q",
    "middle_block_1_transformer_blocks_0_attn2_to_k": "mid_block.attentions.0.transformer_blocks.0.attn2.to_k",
    "middle_block_1_transformer_blocks_1_ff_net_2": "mid_block.attentions.0.transformer_blocks.1.ff.net.2",
    "output_blocks_0_1_transformer_blocks_0_attn1_to_out_0": "up_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0",
    "output_blocks_1_0_skip_connection": "up_blocks.0.resnets.1.conv_shortcut",
    "output_blocks_1_1_proj_out": "up_blocks.0.attentions.1.proj_out",
}
# LoCon adds the 3×3 convolutions (and the strided downsampler).
LOCON_TINY_SDXL = {
    **SGM_TINY_SDXL,
    "input_blocks_0_0": "conv_in",
    "input_blocks_1_0_in_layers_2": "down_blocks.0.resnets.0.conv1",
    "input_blocks_2_0_op": "down_blocks.0.downsamplers.0.conv",
    "middle_block_2_out_layers_3": "mid_block.resnets.1.conv2",
    "output_blocks_1_2_conv": "up_blocks.0.upsamplers.0.conv",
    "output_blocks_3_0_in_layers_2": "up_blocks.1.resnets.1.conv1",
    "out_2": "conv_out",
}


def handmade_kohya(
    unet: Any, names: Mapping[str, str], rank: int, alpha: Callable[[int], float], seed: int
) -> dict[str, torch.Tensor]:
    """kohya tensors for `names` (SGM name -> diffusers module), shaped from the upstream UNet's layers."""
    generator = torch.Generator().manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    for number, (sgm, module) in enumerate(sorted(names.items())):
        weight = unet.get_submodule(module).weight
        out, inputs, kernel = (
            int(weight.shape[0]),
            int(weight.shape[1]),
            tuple(int(k) for k in weight.shape[2:]),
        )
        pointwise = () if not kernel else (1, 1)
        key = f"lora_unet_{sgm}"
        tensors[f"{key}.lora_down.weight"] = 0.2 * torch.randn(rank, inputs, *kernel, generator=generator)
        tensors[f"{key}.lora_up.weight"] = 0.2 * torch.randn(out, rank, *pointwise, generator=generator)
        tensors[f"{key}.alpha"] = torch.tensor(float(alpha(number)))
    return tensors


def load_with_diffusers(unet: Any, path: Path, name: str = "default") -> None:
    """diffusers' own loading of a LoRA file into a UNet (kohya names converted by diffusers)."""
    from diffusers.loaders.lora_pipeline import StableDiffusionXLLoraLoaderMixin as Loader

    loaded: Any = Loader.lora_state_dict(str(path), unet_config=unet.config)
    Loader.load_lora_into_unet(loaded[0], loaded[1], unet, adapter_name=name)


# -- the checks every format goes through -------------------------------------------------------------


def check_lora_parity(
    tiny: TinyFamily, component: str, path: Path, reference: nn.Module, expected_format: str
) -> dict[str, float]:
    """Ours with the LoRA vs the reference at scales 1 and 0.5; fused vs injected; eject and unfuse exact."""
    from converters.lora import load_lora
    from zoo.lora import eject_loras, fuse_loras, lora_names, set_lora_scale

    ours = tiny.ours(component)
    before, plain = snapshot(ours), tiny.run(component, ours, upstream=False)
    loaded = load_lora(ours, path, name="style")
    assert loaded.format == expected_format and loaded.layers > 0
    reference_out = tiny.run(component, reference, upstream=True)
    injected = tiny.run(component, ours, upstream=False)
    errors = {"lora_effect": max_relative_error(plain, reference_out)}
    errors["scale_1"] = max_relative_error(injected, reference_out)
    set_lora_scale(ours, "style", 0.5)
    with scaled(reference, 0.5):
        errors["scale_0.5"] = max_relative_error(
            tiny.run(component, ours, False), tiny.run(component, reference, True)
        )
    set_lora_scale(ours, "style", 1.0)
    fused = fuse_loras(ours)
    assert lora_names(ours) == []
    errors["fused"] = max_relative_error(tiny.run(component, ours, upstream=False), injected)
    fused.unfuse()
    assert same_bits(ours, before)
    load_lora(ours, path, name="style")
    eject_loras(ours)
    assert same_bits(ours, before) and lora_names(ours) == []
    assert all(torch.equal(a, b) for a, b in zip(tiny.run(component, ours, False), plain, strict=True))
    print(f"{expected_format} {tiny.family}.{component}: {errors}")
    assert errors["lora_effect"] > 1e-3, "the LoRA must change the output for the test to mean anything"
    assert max(errors["scale_1"], errors["scale_0.5"], errors["fused"]) <= TOLERANCE
    return errors

"""Every supported LoRA format, made by real tools, on tiny SD 1.5 / SDXL: ours vs the upstream stack.

For each: the chain model with the LoRA matches the diffusers/peft model with the same LoRA (relative
error <= 1e-5) at scale 1 and 0.5, fused matches injected, and ejecting restores the base bit for bit.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lora_helpers import (  # pyright: ignore[reportMissingImports]
    LOCON_TINY_SDXL,
    SGM_TINY_SDXL,
    TOLERANCE,
    UNET_POINTWISE_TARGETS,
    TinyFamily,
    add_text_lora,
    add_unet_lora,
    check_lora_parity,
    diffusers_prefixed,
    handmade_kohya,
    load_with_diffusers,
    max_relative_error,
    peft_state,
    same_bits,
    save_diffusers,
    save_kohya,
    snapshot,
)
from safetensors.torch import load_file, save_file
from torch import nn

from converters.lora import load_lora, read_lora, resolve_base
from converters.lora.names import upstream_module_names
from zoo.lora import eject_loras, lora_names, remove_lora

FAMILIES = ("sdxl", "sd15")
# Stacking adapters on purpose (two LoRAs; a PEFT model around an already adapted tower) is what peft warns
# of; peft 0.21 still calls a transformers 5 method deprecated for v6.
pytestmark = [
    pytest.mark.filterwarnings("ignore:Already found a `peft_config` attribute"),
    pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated"),
]


@pytest.mark.parametrize("family", FAMILIES)
def test_diffusers_format(tiny: dict[str, TinyFamily], family: str, tmp_path: Path) -> None:
    fam = tiny[family]
    unet, towers = fam.upstream("unet"), fam.upstream("text_encoder")
    unet_config = add_unet_lora(unet, seed=1, rank=4, alpha=8)
    text_config = add_text_lora(towers, seed=2, rank=4, alpha=6)
    path = save_diffusers(tmp_path, family, unet, towers, unet_config, text_config)
    check_lora_parity(fam, "unet", path, unet, "diffusers")
    check_lora_parity(fam, "text_encoder", path, towers, "diffusers")


def test_diffusers_format_without_alphas_scales_by_one_as_diffusers_does(
    tiny: dict[str, TinyFamily], tmp_path: Path
) -> None:
    fam = tiny["sdxl"]
    trained = fam.upstream("unet")
    add_unet_lora(trained, seed=3, rank=4, alpha=12)
    path = save_diffusers(tmp_path, "sdxl", trained, None, None)  # no metadata: the alphas are lost
    reference = fam.upstream("unet")
    load_with_diffusers(reference, path)
    check_lora_parity(fam, "unet", path, reference, "diffusers")


def test_older_diffusers_layouts(tiny: dict[str, TinyFamily], tmp_path: Path) -> None:
    """`lora.down`/`lora.up`, attention processors' `to_q_lora.down` and CLIP's `lora_linear_layer`."""
    from diffusers.utils.state_dict_utils import StateDictType, convert_state_dict_to_diffusers

    fam = tiny["sdxl"]
    unet, towers = fam.upstream("unet"), fam.upstream("text_encoder")
    add_unet_lora(unet, seed=14, rank=4, alpha=4)  # no alphas in these layouts: scale 1
    add_text_lora(towers, seed=15, rank=4, alpha=4)
    old = convert_state_dict_to_diffusers(
        diffusers_prefixed(unet, towers, text_model=True), original_type=StateDictType.PEFT
    )
    old = {_processor_style(key): value for key, value in old.items()}
    assert any(".processor.to_q_lora.down." in key for key in old)
    assert any(".lora.down." in key for key in old) and any(".lora_linear_layer." in key for key in old)
    path = tmp_path / "old.safetensors"
    save_file(old, path)
    check_lora_parity(fam, "unet", path, unet, "diffusers")
    check_lora_parity(fam, "text_encoder", path, towers, "diffusers")


def _processor_style(key: str) -> str:
    """diffusers < 0.20 saved attn1 LoRAs through attention processors."""
    for name in ("to_q", "to_k", "to_v"):
        key = key.replace(f".attn1.{name}.lora.", f".attn1.processor.{name}_lora.")
    return key.replace(".attn1.to_out.0.lora.", ".attn1.processor.to_out_lora.")


@pytest.mark.parametrize("family", FAMILIES)
def test_kohya_converted_by_diffusers(tiny: dict[str, TinyFamily], family: str, tmp_path: Path) -> None:
    fam = tiny[family]
    unet, towers = fam.upstream("unet"), fam.upstream("text_encoder")
    add_unet_lora(unet, seed=4, rank=4, alpha=3, targets=UNET_POINTWISE_TARGETS)
    add_text_lora(towers, seed=5, rank=4, alpha=3)
    path = save_kohya(
        tmp_path / "kohya.safetensors", diffusers_prefixed(unet, towers, text_model=True), alpha=3
    )
    if family == "sd15":  # A1111's SD 1.x files name the one text encoder `lora_te_`
        renamed = {k.replace("lora_te1_", "lora_te_"): v for k, v in load_file(path).items()}
        save_file(renamed, path)
    assert any(
        key.startswith(("lora_te1_text_model_", "lora_te_text_model_")) for key in read_lora(path).tensors
    )
    check_lora_parity(fam, "unet", path, unet, "kohya")
    check_lora_parity(fam, "text_encoder", path, towers, "kohya")


def test_kohya_keys_with_3x3_convolutions_are_locon(tiny: dict[str, TinyFamily], tmp_path: Path) -> None:
    fam = tiny["sd15"]
    unet = fam.upstream("unet")
    add_unet_lora(unet, seed=13, rank=4, alpha=2)
    path = save_kohya(
        tmp_path / "locon.safetensors", diffusers_prefixed(unet, None, text_model=True), alpha=2
    )
    check_lora_parity(fam, "unet", path, unet, "lycoris_locon")


def test_kohya_text_encoder_without_text_model_prefix(tiny: dict[str, TinyFamily], tmp_path: Path) -> None:
    fam = tiny["sdxl"]
    towers = fam.upstream("text_encoder")
    add_text_lora(towers, seed=6, rank=2, alpha=2)
    path = save_kohya(
        tmp_path / "kohya.safetensors", diffusers_prefixed(None, towers, text_model=False), alpha=2
    )
    check_lora_parity(fam, "text_encoder", path, towers, "kohya")


@pytest.mark.parametrize(
    ("names", "expected"), [(SGM_TINY_SDXL, "kohya"), (LOCON_TINY_SDXL, "lycoris_locon")]
)
def test_handmade_sgm_kohya_and_locon(
    tiny: dict[str, TinyFamily], tmp_path: Path, names: dict[str, str], expected: str
) -> None:
    fam = tiny["sdxl"]
    reference = fam.upstream("unet")
    path = tmp_path / f"{expected}.safetensors"
    save_file(handmade_kohya(reference, names, rank=4, alpha=lambda _n: 3.0, seed=7), path)
    load_with_diffusers(reference, path)
    check_lora_parity(fam, "unet", path, reference, expected)


def test_sgm_block_names_map_to_the_diffusers_modules(tiny: dict[str, TinyFamily], tmp_path: Path) -> None:
    fam = tiny["sdxl"]
    path = tmp_path / "locon.safetensors"
    save_file(
        handmade_kohya(fam.upstream("unet"), LOCON_TINY_SDXL, rank=2, alpha=lambda n: n + 1, seed=8), path
    )
    lora = read_lora(path)
    names = upstream_module_names(lora, resolve_base(fam.out))
    assert {
        entry.name.removeprefix("lora_unet_"): module for entry, module in names.items()
    } == LOCON_TINY_SDXL


def test_per_entry_alphas_are_folded_per_entry(tiny: dict[str, TinyFamily], tmp_path: Path) -> None:
    """Different alphas in one file: each layer's update is alpha_i / rank (kohya's rule)."""
    from zoo.lora import lora_adapters

    fam = tiny["sdxl"]
    path = tmp_path / "alphas.safetensors"
    tensors = handmade_kohya(
        fam.upstream("unet"), SGM_TINY_SDXL, rank=4, alpha=lambda n: 0.5 * (n + 1), seed=9
    )
    save_file(tensors, path)
    ours = fam.ours("unet")
    load_lora(ours, path, name="alphas")
    lora = read_lora(path)
    base = resolve_base(fam.out)
    names = upstream_module_names(lora, base)
    index = base.model_for("unet").index()  # pyright: ignore[reportOptionalMemberAccess]
    paths = {entry: index.placements[module].path for entry, module in names.items()}
    deltas = {
        adapter.target: adapter.loras["alphas"].delta_weight()
        for adapter in lora_adapters(ours)  # pyright: ignore[reportArgumentType]
    }
    for entry, layer_path in paths.items():
        down, up = lora.tensors[entry.down_key], lora.tensors[entry.up_key]
        expected = (up.flatten(1) @ down.flatten(1)) * (lora.alpha(entry) / 4)  # pyright: ignore[reportOptionalOperand]
        layer = next(t for t in deltas if t is _layer(ours, layer_path))
        assert torch.allclose(deltas[layer].flatten(1), expected, rtol=1e-6, atol=1e-7)


def _layer(model: nn.Module, base_path: str) -> nn.Module:
    import zoo.fluxion as fl

    live = {base: key for key, base in fl.base_key_map(model).items()}[base_path + ".weight"]
    return model.get_submodule(live.removesuffix(".weight"))


@pytest.mark.parametrize("component", ["unet", "text_encoder"])
def test_peft_format(tiny: dict[str, TinyFamily], tmp_path: Path, component: str) -> None:
    from lora_helpers import TEXT_TARGETS, UNET_TARGETS, lora_config  # pyright: ignore[reportMissingImports]
    from peft import get_peft_model

    fam = tiny["sdxl"]
    reference = fam.upstream(component)
    targets = UNET_TARGETS if component == "unet" else TEXT_TARGETS
    torch.manual_seed(10)
    # The second tower only: the file does not say which tower, its shapes do.
    inner = reference if component == "unet" else reference["text_encoder_2"]  # pyright: ignore[reportIndexIssue]
    wrapped = get_peft_model(inner, lora_config(4, 5, targets))  # pyright: ignore[reportArgumentType]
    wrapped.save_pretrained(tmp_path)
    if component == "unet":
        reference = wrapped.base_model.model
    else:
        reference["text_encoder_2"] = wrapped.base_model.model  # pyright: ignore[reportIndexIssue]
    path = tmp_path / "adapter_model.safetensors"
    assert all(key.startswith("base_model.model.") for key in read_lora(path).tensors)
    check_lora_parity(fam, component, path, reference, "peft")


def test_two_loras_with_different_scales_match_the_upstream_stack(
    tiny: dict[str, TinyFamily], tmp_path: Path
) -> None:
    from zoo.lora import set_lora_scale

    fam = tiny["sdxl"]
    upstream = fam.upstream("unet")
    configs = {"a": add_unet_lora(upstream, seed=11, rank=4, alpha=8, name="a")}
    configs["b"] = add_unet_lora(upstream, seed=12, rank=2, alpha=1, name="b")
    from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl import StableDiffusionXLPipeline

    files = {}
    for name, config in configs.items():
        (tmp_path / name).mkdir()
        StableDiffusionXLPipeline.save_lora_weights(
            tmp_path / name,
            unet_lora_layers=peft_state(upstream, name),
            unet_lora_adapter_metadata=config.to_dict(),
        )
        files[name] = tmp_path / name / "pytorch_lora_weights.safetensors"
    ours = fam.ours("unet")
    before = snapshot(ours)
    load_lora(ours, files["a"], name="a", scale=0.7)
    load_lora(ours, files["b"], name="b", scale=0.3)
    upstream.set_adapters(["a", "b"], weights=[0.7, 0.3])  # pyright: ignore[reportCallIssue]
    both = max_relative_error(fam.run("unet", ours, False), fam.run("unet", upstream, True))
    set_lora_scale(ours, "b", 1.5)
    upstream.set_adapters(["a", "b"], weights=[0.7, 1.5])  # pyright: ignore[reportCallIssue]
    rescaled = max_relative_error(fam.run("unet", ours, False), fam.run("unet", upstream, True))
    remove_lora(ours, "a")
    upstream.set_adapters(["b"], weights=[1.5])  # pyright: ignore[reportCallIssue]
    only_b = max_relative_error(fam.run("unet", ours, False), fam.run("unet", upstream, True))
    print(f"two LoRAs: {both}, b rescaled: {rescaled}, a removed: {only_b}")
    assert max(both, rescaled, only_b) <= TOLERANCE
    assert lora_names(ours) == ["b"]
    eject_loras(ours)
    assert same_bits(ours, before)

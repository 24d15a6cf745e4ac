"""peft's LoHa, LoKr and DoRA, saved by peft (`save_pretrained`) or diffusers (`save_lora_weights`), and
the attention-processor layout of diffusers' first training scripts: ours vs the library's own model.

peft's rules differ from LyCORIS' where it matters: a LoKr's factor is always `alpha / r` (from its
settings, even with two whole factors), and a DoRA's scale acts inside the norm. The reference is the
peft model itself (scale set with `set_scale`), or diffusers' own loading for the old layout.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from lora_helpers import (  # pyright: ignore[reportMissingImports]
    TEXT_TARGETS,
    TOLERANCE,
    UNET_TARGETS,
    TinyFamily,
    diffusers_prefixed,
    max_relative_error,
    save_diffusers,
)
from lycoris_helpers import check_parity  # pyright: ignore[reportMissingImports]
from torch import nn

from converters.lora import load_lora, read_lora

pytestmark = [
    pytest.mark.filterwarnings("ignore:Already found a `peft_config` attribute"),
    pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated"),
]


def _rescale(model: nn.Module) -> Callable[[float], None]:
    """Set every peft layer's scale (peft's `set_scale`: the configured factor times `scale`)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    def rescale(scale: float) -> None:
        for module in model.modules():
            if isinstance(module, BaseTunerLayer):
                tuner: Any = module  # every peft layer kind has `set_scale`; the base class does not say so
                tuner.set_scale("default", scale)

    return rescale


def _perturb_magnitudes(model: nn.Module, seed: int) -> None:
    """DoRA starts with magnitudes equal to the norms, where it changes nothing at scale 1: move them."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in sorted(model.named_parameters()):
            if "lora_magnitude_vector" in name:
                parameter.mul_(1 + 0.1 * torch.randn(parameter.shape, generator=generator))


def _peft_saved(model: nn.Module, config: Any, folder: Path, seed: int) -> tuple[nn.Module, Path]:
    """`get_peft_model` with random weights, saved by peft; returns the adapted model and the file."""
    from peft import get_peft_model

    torch.manual_seed(seed)
    wrapped = get_peft_model(model, config)  # pyright: ignore[reportArgumentType]
    _perturb_magnitudes(wrapped, seed)
    wrapped.save_pretrained(folder)
    return wrapped.base_model.model, folder / "adapter_model.safetensors"  # pyright: ignore[reportReturnType]


def test_peft_loha_with_tucker_cores_on_the_unet(tiny: dict[str, TinyFamily], tmp_path: Path) -> None:
    from peft import LoHaConfig

    fam = tiny["sdxl"]
    config = LoHaConfig(
        r=4, alpha=6, target_modules=UNET_TARGETS, use_effective_conv2d=True, init_weights=False
    )
    reference, path = _peft_saved(fam.upstream("unet"), config, tmp_path, seed=31)
    assert any(key.endswith(".hada_t1") for key in read_lora(path).tensors)
    check_parity(fam, "unet", path, reference, _rescale(reference), "peft")


def test_peft_lokr_on_a_text_tower_scales_by_its_settings(
    tiny: dict[str, TinyFamily], tmp_path: Path
) -> None:
    """The factor is alpha / r from adapter_config.json (patterns per module), whole factors included."""
    from peft import LoKrConfig

    fam = tiny["sdxl"]
    towers = fam.upstream("text_encoder")
    config = LoKrConfig(
        r=2,
        alpha=5,
        target_modules=TEXT_TARGETS,
        decompose_both=True,
        init_weights=False,
        rank_pattern={"fc1": 8},
        alpha_pattern={"q_proj": 3},
    )
    towers["text_encoder_2"], path = _peft_saved(towers["text_encoder_2"], config, tmp_path, seed=32)
    whole = {
        entry.key("lokr_w1") is not None and entry.key("lokr_w2") is not None
        for entry in read_lora(path).entries
    }
    assert whole == {True, False}  # fc1's rank 8 gives whole factors: the tensors show no rank there
    check_parity(fam, "text_encoder", path, towers, _rescale(towers), "peft")


def test_peft_dora_with_rslora_on_a_text_tower(tiny: dict[str, TinyFamily], tmp_path: Path) -> None:
    from peft import LoraConfig

    fam = tiny["sd15"]
    towers = fam.upstream("text_encoder")
    settings = {"use_dora": True, "use_rslora": True, "alpha_pattern": {"fc2": 3}}
    config = LoraConfig(r=4, lora_alpha=8, target_modules=TEXT_TARGETS, init_lora_weights=False, **settings)
    towers["text_encoder"], path = _peft_saved(towers["text_encoder"], config, tmp_path, seed=33)
    check_parity(fam, "text_encoder", path, towers, _rescale(towers), "peft")


def test_diffusers_dora_on_unet_and_text_encoder(tiny: dict[str, TinyFamily], tmp_path: Path) -> None:
    """DoRA saved by diffusers: magnitudes of convolutions are (1, out, 1, 1), settings in the header."""
    from lora_helpers import lora_config  # pyright: ignore[reportMissingImports]
    from peft import inject_adapter_in_model

    fam = tiny["sdxl"]
    unet, towers = fam.upstream("unet"), fam.upstream("text_encoder")
    unet_config, text_config = lora_config(4, 6, UNET_TARGETS), lora_config(4, 2, TEXT_TARGETS)
    unet_config.use_dora = text_config.use_dora = True
    torch.manual_seed(34)
    unet.add_adapter(unet_config)  # pyright: ignore[reportCallIssue]
    for tower in ("text_encoder", "text_encoder_2"):
        towers[tower] = inject_adapter_in_model(text_config, towers[tower])
    _perturb_magnitudes(unet, 35)
    _perturb_magnitudes(towers, 36)
    path = save_diffusers(tmp_path, "sdxl", unet, towers, unet_config, text_config)
    assert any(key.endswith("lora_magnitude_vector") for key in read_lora(path).tensors)
    check_parity(fam, "unet", path, unet, _rescale(unet), "diffusers")
    check_parity(fam, "text_encoder", path, towers, _rescale(towers), "diffusers")


def test_the_first_training_scripts_attention_processor_layout(
    tiny: dict[str, TinyFamily], tmp_path: Path
) -> None:
    """`down_blocks.0...attn1.processor.to_q_lora.down.weight` without `unet.`, a torch pickle: diffusers'
    UNet loader still reads it (`load_lora_adapter(..., prefix=None)`); so do we (on the tiny SDXL UNet,
    which has the same attention processors and runs faster than the tiny SD 1.5 one)."""
    from diffusers.utils.state_dict_utils import StateDictType, convert_state_dict_to_diffusers
    from lora_helpers import add_unet_lora  # pyright: ignore[reportMissingImports]

    fam = tiny["sdxl"]
    trained = fam.upstream("unet")
    add_unet_lora(trained, seed=37, rank=4, alpha=4, targets=["to_q", "to_k", "to_v", "to_out.0"])
    old = convert_state_dict_to_diffusers(
        diffusers_prefixed(trained, None, False), original_type=StateDictType.PEFT
    )
    old = {_processor_key(key): value for key, value in old.items()}
    path = tmp_path / "pytorch_lora_weights.bin"
    torch.save(old, path)
    reference = fam.upstream("unet")
    reference.load_lora_adapter(torch.load(path, weights_only=True), prefix=None)  # pyright: ignore[reportCallIssue]
    ours = fam.ours("unet")
    load_lora(ours, path)
    error = max_relative_error(fam.run("unet", ours, False), fam.run("unet", reference, True))
    effect = max_relative_error(fam.run("unet", fam.ours("unet"), False), fam.run("unet", reference, True))
    print(f"attention processors sdxl.unet: {error}, effect {effect}")
    assert error <= TOLERANCE < 1e-3 < effect


def _processor_key(key: str) -> str:
    """diffusers < 0.20 saved the UNet's attention processors, keys without `unet.`."""
    key = key.removeprefix("unet.")
    for name in ("to_q", "to_k", "to_v"):
        key = key.replace(f".{name}.lora.", f".processor.{name}_lora.")
    return key.replace(".to_out.0.lora.", ".processor.to_out_lora.")

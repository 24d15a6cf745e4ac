"""LyCORIS files, written by lycoris-lora itself, on tiny SD 1.5 / SDXL: ours vs LyCORIS' own modules.

Each network mixes kinds module by module (LoHa with and without Tucker cores, LoKr factorised, Tucker
or whole, LoCon with a Tucker core, DoRA on LoRA / LoHa / LoKr on either axis, full and norm diffs,
rsLoRA), as
LyCORIS presets allow, so one file checks them all. The reference is the upstream model with the
network applied (LyCORIS' modules computing their updates), at multipliers 1 and 0.5; ours is loaded
from the saved file, injected and fused (relative error <= 1e-5).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from lora_helpers import TinyFamily  # pyright: ignore[reportMissingImports]
from lycoris_helpers import (  # pyright: ignore[reportMissingImports]
    check_parity,
    kohya_network,
    lycoris_network,
    save_lycoris,
)

from converters.lora import load_lora_into, read_lora

pytestmark = pytest.mark.filterwarnings("ignore:.*LoHa/LoKr.*")

# Every kind, one module family each (class names are diffusers' and transformers').
MIXED_KOHYA = {
    "unet_target_module": ["Transformer2DModel", "ResnetBlock2D", "Downsample2D", "Upsample2D"],
    "unet_target_name": ["conv_in", "conv_out", "time_embedding.linear_1", "time_embedding.linear_2"],
    "text_encoder_target_module": ["CLIPEncoderLayer"],
    "text_encoder_target_name": ["final_layer_norm"],
    "module_algo_map": {
        "Attention": {"algo": "loha", "weight_decompose": True},
        "FeedForward": {"algo": "lokr", "factor": 4, "decompose_both": True},
        "ResnetBlock2D": {"algo": "loha", "use_tucker": True},
        "Downsample2D": {"algo": "lora", "use_tucker": True, "rs_lora": True},
        "Upsample2D": {"algo": "lokr", "use_tucker": True, "factor": 4},
        "CLIPAttention": {"algo": "lokr", "weight_decompose": True, "wd_on_out": False},
        "CLIPMLP": {"algo": "lora", "weight_decompose": True, "rs_lora": True},
    },
    "name_algo_map": {
        "conv_in": {"algo": "full"},
        "conv_out": {"algo": "loha", "weight_decompose": True, "wd_on_out": False},
        "time_embedding.linear_1": {"algo": "full"},
        "time_embedding.linear_2": {"algo": "lokr", "full_matrix": True},
    },
}


def _roles(path: Path) -> Counter[str]:
    return Counter(key.partition(".")[2] for key in read_lora(path).tensors)


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_kohya_named_lycoris_with_every_kind(
    tiny: dict[str, TinyFamily], tmp_path: Path, family: str
) -> None:
    """SD 1.5 (`lora_te_`, 1×1 convolution projections) and SDXL (`lora_te1_`, `lora_te2_`)."""
    fam = tiny[family]
    network, unet, towers = kohya_network(
        fam, MIXED_KOHYA, seed=21, algo="lora", train_norm=True, conv_dim=4, conv_alpha=3
    )
    path = save_lycoris(network, tmp_path / "mixed.safetensors")
    lora = read_lora(path)
    assert lora.format == "kohya"
    assert {"LoHa", "LoKr", "LoRA", "full", "norm", "DoRA (LoHa)", "DoRA (LoKr)", "DoRA (LoRA)"} <= set(
        lora.kinds
    )
    roles = _roles(path)
    assert {"hada_t1", "lokr_t2", "lora_mid.weight", "lokr_w2", "diff", "diff_b", "w_norm", "b_norm"} <= set(
        roles
    )
    check_parity(fam, "unet", path, unet, network.set_multiplier, "kohya")
    check_parity(fam, "text_encoder", path, towers, network.set_multiplier, "kohya")


def test_lycoris_names_on_the_sdxl_unet(tiny: dict[str, TinyFamily], tmp_path: Path) -> None:
    """`lycoris_*` keys say no component: the UNet is the one model every entry fits."""
    fam = tiny["sdxl"]
    unet = fam.upstream("unet")
    preset = {
        "target_module": ["Transformer2DModel", "ResnetBlock2D"],
        "module_algo_map": {"FeedForward": {"algo": "loha"}, "ResnetBlock2D": {"algo": "lokr", "factor": 8}},
    }
    network = lycoris_network(
        unet, preset, seed=22, algo="lokr", linear_dim=2, linear_alpha=1, decompose_both=True
    )
    path = save_lycoris(network, tmp_path / "lycoris.safetensors")
    assert all(key.startswith("lycoris_") for key in read_lora(path).tensors)
    check_parity(fam, "unet", path, unet, network.set_multiplier, "lycoris")
    loaded = load_lora_into([fam.ours("unet"), fam.ours("text_encoder")], path)  # as `zoo generate --lora`
    assert [(lora.component, lora.skipped) for lora in loaded] == [("unet", 0)]


def test_lycoris_names_on_one_sdxl_text_tower(tiny: dict[str, TinyFamily], tmp_path: Path) -> None:
    fam = tiny["sdxl"]
    towers = fam.upstream("text_encoder")
    preset = {"target_module": ["CLIPAttention", "CLIPMLP"]}
    network = lycoris_network(towers["text_encoder_2"], preset, seed=23, algo="loha", dora_wd=True)
    path = save_lycoris(network, tmp_path / "tower.safetensors")
    check_parity(fam, "text_encoder", path, towers, network.set_multiplier, "lycoris")

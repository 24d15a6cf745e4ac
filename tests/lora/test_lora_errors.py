"""Bad LoRA files: each a clear, typed error naming what is wrong, and the model left as it was."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from lora_helpers import (  # pyright: ignore[reportMissingImports]
    SGM_TINY_SDXL,
    TinyFamily,
    add_unet_lora,
    diffusers_prefixed,
    handmade_kohya,
    same_bits,
    save_kohya,
    snapshot,
)
from safetensors.torch import load_file, save_file

from converters.lora import convert_lora, load_lora, read_lora
from zoo.errors import CoverageError, FormatError, TensorValueError, ZooError
from zoo.lora import lora_names


@pytest.fixture
def kohya_sdxl(tiny: dict[str, TinyFamily], tmp_path: Path) -> Path:
    """A valid hand-built kohya LoRA for tiny SDXL (SGM names, alphas)."""
    path = tmp_path / "good.safetensors"
    save_file(handmade_kohya(tiny["sdxl"].upstream("unet"), SGM_TINY_SDXL, 4, lambda _n: 2.0, seed=1), path)
    return path


def _edited(source: Path, target: Path, edit: Callable[[dict[str, torch.Tensor]], None]) -> Path:
    tensors = load_file(source)
    edit(tensors)
    save_file(tensors, target)
    return target


def _refused(tiny: TinyFamily, path: Path, error: type[ZooError], match: str, out: Path) -> ZooError:
    """Loading into our UNet and converting both fail with `error`; the model and `out` stay unchanged."""
    model = tiny.ours("unet")
    before = snapshot(model)
    with pytest.raises(error, match=match) as caught:
        load_lora(model, path, name="bad")
    assert same_bits(model, before) and lora_names(model) == []
    with pytest.raises(error, match=match):
        convert_lora(path, tiny.out, out=out)
    assert not out.exists() or not any(out.iterdir())
    print(f"{error.__name__}: {caught.value}")
    return caught.value


def test_an_sd15_lora_on_sdxl_is_refused_listing_the_entries(
    tiny: dict[str, TinyFamily], tmp_path: Path
) -> None:
    unet = tiny["sd15"].upstream("unet")
    add_unet_lora(unet, seed=2)
    path = save_kohya(tmp_path / "sd15.safetensors", diffusers_prefixed(unet, None, text_model=True), alpha=4)
    error = _refused(tiny["sdxl"], path, CoverageError, "cannot be placed on sdxl", tmp_path / "out")
    assert "lora_unet_down_blocks_0_attentions_0" in error.message  # SDXL's first level has no attention
    assert error.file == str(path)
    assert error.hint is not None and "sd15" in error.hint


def test_one_extra_unknown_key_is_refused_by_name(
    tiny: dict[str, TinyFamily], kohya_sdxl: Path, tmp_path: Path
) -> None:
    def add_key(tensors: dict[str, torch.Tensor]) -> None:
        tensors["model.diffusion_model.extra.weight"] = torch.zeros(2)

    path = _edited(kohya_sdxl, tmp_path / "extra.safetensors", add_key)
    error = _refused(tiny["sdxl"], path, FormatError, "fit no LoRA format", tmp_path / "out")
    assert "model.diffusion_model.extra.weight" in error.message


def test_a_rank_mismatch_is_refused(tiny: dict[str, TinyFamily], kohya_sdxl: Path, tmp_path: Path) -> None:
    key = "lora_unet_input_blocks_3_1_proj_in.lora_up.weight"

    def widen(tensors: dict[str, torch.Tensor]) -> None:
        tensors[key] = torch.randn(tensors[key].shape[0], 5)

    path = _edited(kohya_sdxl, tmp_path / "rank.safetensors", widen)
    error = _refused(tiny["sdxl"], path, FormatError, "rank mismatch", tmp_path / "out")
    assert error.tensor == "lora_unet_input_blocks_3_1_proj_in.lora_down.weight"


def test_a_nan_is_refused(tiny: dict[str, TinyFamily], kohya_sdxl: Path, tmp_path: Path) -> None:
    key = "lora_unet_time_embed_0.lora_down.weight"

    def poison(tensors: dict[str, torch.Tensor]) -> None:
        tensors[key][1, 2] = float("nan")

    path = _edited(kohya_sdxl, tmp_path / "nan.safetensors", poison)
    error = _refused(tiny["sdxl"], path, TensorValueError, "NaN", tmp_path / "out")
    assert error.tensor == key


def test_a_module_the_base_does_not_have_is_refused(
    tiny: dict[str, TinyFamily], kohya_sdxl: Path, tmp_path: Path
) -> None:
    def add_entry(tensors: dict[str, torch.Tensor]) -> None:
        tensors["lora_unet_down_blocks_7_attentions_0_proj_in.lora_down.weight"] = torch.randn(2, 64)
        tensors["lora_unet_down_blocks_7_attentions_0_proj_in.lora_up.weight"] = torch.randn(64, 2)

    path = _edited(kohya_sdxl, tmp_path / "nowhere.safetensors", add_entry)
    # SGM and diffusers block names in one file: diffusers would drop the SGM ones, we refuse.
    _refused(tiny["sdxl"], path, FormatError, "mixes SGM", tmp_path / "out")
    clean = tmp_path / "diffusers-names.safetensors"
    save_file(
        {
            "lora_unet_down_blocks_7_attentions_0_proj_in.lora_down.weight": torch.randn(2, 64),
            "lora_unet_down_blocks_7_attentions_0_proj_in.lora_up.weight": torch.randn(64, 2),
        },
        clean,
    )
    error = _refused(tiny["sdxl"], clean, CoverageError, "no such module", tmp_path / "out")
    assert "down_blocks.7.attentions.0.proj_in" in error.message


def test_shapes_that_do_not_fit_are_refused(tiny: dict[str, TinyFamily], tmp_path: Path) -> None:
    path = tmp_path / "shape.safetensors"
    save_file(
        {
            "lora_unet_time_embedding_linear_1.lora_down.weight": torch.randn(2, 33),
            "lora_unet_time_embedding_linear_1.lora_up.weight": torch.randn(128, 2),
        },
        path,
    )
    error = _refused(tiny["sdxl"], path, CoverageError, "do not fit", tmp_path / "out")
    assert "(2, 33)" in error.message


@pytest.mark.parametrize(
    ("keys", "match"),
    [
        (
            {"lora_unet_a.lora_down.weight", "unet.b.lora_A.weight", "unet.b.lora_B.weight"},
            "mixes LoRA formats",
        ),
        ({"lora_unet_a.hada_w1_a", "lora_unet_a.hada_w1_b"}, "lacks hada_w2_a, hada_w2_b"),
        ({"lora_unet_a.lora_down.weight", "lora_unet_a.hada_w1_a"}, "mixes LoHa and LoRA"),
        ({"lora_unet_a.lora_down.weight", "lora_unet_a.oft_blocks"}, "LyCORIS OFT"),
        ({"lora_unet_a.lora_down.weight"}, "the down or up half of a LoRA is missing"),
        ({"first_stage_model.encoder.conv_in.weight"}, "fit no LoRA format"),
    ],
)
def test_unknown_mixed_or_unsupported_files(tmp_path: Path, keys: set[str], match: str) -> None:
    path = tmp_path / "weird.safetensors"
    save_file({key: torch.zeros(2, 2) for key in keys}, path)
    with pytest.raises(FormatError, match=match) as caught:
        read_lora(path)
    assert caught.value.file == str(path)


def test_a_lora_converted_for_another_base_is_refused_at_load(
    tiny: dict[str, TinyFamily], tmp_path: Path
) -> None:
    unet = tiny["sd15"].upstream("unet")
    add_unet_lora(unet, seed=3)
    source = save_kohya(
        tmp_path / "sd15.safetensors", diffusers_prefixed(unet, None, text_model=True), alpha=4
    )
    converted = convert_lora(source, tiny["sd15"].out, out=tmp_path / "out").output
    model = tiny["sdxl"].ours("unet")
    before = snapshot(model)
    with pytest.raises(ZooError, match="converted for another unet"):
        load_lora(model, converted)
    assert same_bits(model, before)

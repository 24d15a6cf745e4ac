"""`zoo convert lora FILE --base BASE`: our format, deterministic, loadable; errors as one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from lora_helpers import (  # pyright: ignore[reportMissingImports]
    SGM_TINY_SDXL,
    UNET_POINTWISE_TARGETS,
    TinyFamily,
    add_text_lora,
    add_unet_lora,
    diffusers_prefixed,
    handmade_kohya,
    save_kohya,
)
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from converters.lora import load_lora
from zoo.cli import main


@pytest.fixture
def kohya(tiny: dict[str, TinyFamily], tmp_path: Path) -> Path:
    """A kohya LoRA for tiny SDXL: UNet and both text towers."""
    fam = tiny["sdxl"]
    unet, towers = fam.upstream("unet"), fam.upstream("text_encoder")
    add_unet_lora(unet, seed=1, rank=4, alpha=2, targets=UNET_POINTWISE_TARGETS)
    add_text_lora(towers, seed=2, rank=4, alpha=2)
    prefixed = diffusers_prefixed(unet, towers, text_model=True)
    return save_kohya(tmp_path / "style.safetensors", prefixed, alpha=2)


def _convert(*args: str) -> dict:
    result = CliRunner().invoke(main, ["convert", "lora", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_convert_writes_our_format(tiny: dict[str, TinyFamily], kohya: Path, tmp_path: Path) -> None:
    summary = _convert(str(kohya), "--base", str(tiny["sdxl"].out), "--out", str(tmp_path / "a"))
    output = Path(summary["output"])
    assert output == tmp_path / "a" / "style.safetensors"
    assert summary["format"] == "kohya" and summary["family"] == "sdxl" and summary["ranks"] == [4]
    assert set(summary["layers"]) == {"unet", "text_encoder"}
    tensors = load_file(output)
    assert len(tensors) == summary["tensors"] == 2 * summary["entries"]
    assert all(key.startswith(("unet.", "text_encoder.")) for key in tensors)
    assert "text_encoder.TextEncoders.CLIPTextEncoderG.Transformer.TransformerLayer_1" in next(
        key for key in sorted(tensors) if "CLIPTextEncoderG" in key
    )
    with safe_open(str(output), "pt") as handle:
        metadata = handle.metadata()
    assert metadata["zoo.format"] == "zoo.lora/2" and metadata["zoo.lora.base"] == "sdxl"
    assert metadata["zoo.lora.source_format"] == "kohya" and metadata["zoo.lora.rank"] == "4"
    assert metadata["zoo.lora.source_sha256"] == summary["source_sha256"]


def test_same_input_same_bytes_whatever_the_base_spelling(
    tiny: dict[str, TinyFamily], kohya: Path, tmp_path: Path
) -> None:
    """The output folder and the pipeline it came from are the same base: same bytes, in another process too."""
    first = Path(
        _convert(str(kohya), "--base", str(tiny["sdxl"].out), "--out", str(tmp_path / "a"))["output"]
    )
    second = Path(
        _convert(str(kohya), "--base", str(tiny["sdxl"].source), "--out", str(tmp_path / "b"))["output"]
    )
    command = [
        sys.executable,
        "-m",
        "zoo.cli",
        "convert",
        "lora",
        str(kohya),
        "--base",
        str(tiny["sdxl"].out),
    ]
    subprocess.run([*command, "--out", str(tmp_path / "c")], check=True, capture_output=True)
    third = tmp_path / "c" / "style.safetensors"
    assert first.read_bytes() == second.read_bytes() == third.read_bytes()


def test_the_converted_file_loads_like_the_original(
    tiny: dict[str, TinyFamily], kohya: Path, tmp_path: Path
) -> None:
    fam = tiny["sdxl"]
    converted = Path(_convert(str(kohya), "--base", str(fam.out), "--out", str(tmp_path / "out"))["output"])
    for component in ("unet", "text_encoder"):
        original, ours = fam.ours(component), fam.ours(component)
        load_lora(original, kohya, scale=0.5)
        loaded = load_lora(ours, converted, scale=0.5)
        assert loaded.format == "zoo"
        for a, b in zip(fam.run(component, ours, False), fam.run(component, original, False), strict=True):
            assert torch.equal(a, b)


def test_scale_is_folded_in(tiny: dict[str, TinyFamily], kohya: Path, tmp_path: Path) -> None:
    base = str(tiny["sdxl"].out)
    one = load_file(_convert(str(kohya), "--base", base, "--out", str(tmp_path / "a"))["output"])
    half = load_file(
        _convert(str(kohya), "--base", base, "--out", str(tmp_path / "b"), "--scale", "0.5")["output"]
    )
    for key, tensor in one.items():
        assert torch.equal(half[key], tensor * 0.5 if key.endswith("lora_up.weight") else tensor)


def test_dry_run_writes_nothing(tiny: dict[str, TinyFamily], kohya: Path, tmp_path: Path) -> None:
    summary = _convert(
        str(kohya), "--base", str(tiny["sdxl"].out), "--out", str(tmp_path / "out"), "--dry-run"
    )
    assert summary["dry_run"] and summary["sha256"] is None
    assert not (tmp_path / "out").exists()


def test_errors_are_one_line_with_a_hint(tiny: dict[str, TinyFamily], kohya: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["convert", "lora", str(kohya), "--base", str(tiny["sd15"].out), "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 1
    assert result.output.startswith("error: ") and "cannot be placed on sd15" in result.output
    assert "hint: " in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_full_size_family_base_with_sgm_names(tmp_path: Path) -> None:
    """`--base sdxl`: the full-size configs (layers_per_block 2), traced on meta; a rank-1 LoRA of two layers."""
    path = tmp_path / "full.safetensors"
    save_file(
        {
            "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_down.weight": torch.ones(1, 640),
            "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_up.weight": torch.ones(640, 1),
            "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.alpha": torch.tensor(1.0),
            "lora_te2_text_model_encoder_layers_31_mlp_fc2.lora_down.weight": torch.ones(1, 5120),
            "lora_te2_text_model_encoder_layers_31_mlp_fc2.lora_up.weight": torch.ones(1280, 1),
        },
        path,
    )
    summary = _convert(str(path), "--base", "sdxl", "--out", str(tmp_path / "out"))
    keys = sorted(load_file(summary["output"]))
    assert summary["layers"] == {"text_encoder": 1, "unet": 1}
    # down_blocks.1.attentions.0: the second level's first transformer, in our chain.
    assert any(
        "CLIPTextEncoderG.Transformer.TransformerLayer_32.FeedForwardBlock.Linear_2" in key for key in keys
    )
    assert any(key.startswith("unet.DownBlocks.") and "Distribute.Linear_1" in key for key in keys)


def test_model_conversion_still_takes_its_name(tiny: dict[str, TinyFamily], tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["convert", "sd15.unet", "--source", str(tiny["sd15"].source), "--out", str(tmp_path), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["components"][0]["name"] == "sd15.unet"
    help_text = CliRunner().invoke(main, ["convert", "--help"]).output
    assert "zoo convert lora" in help_text


def test_sgm_lora_through_the_cli(tiny: dict[str, TinyFamily], tmp_path: Path) -> None:
    path = tmp_path / "sgm.safetensors"
    save_file(handmade_kohya(tiny["sdxl"].upstream("unet"), SGM_TINY_SDXL, 2, lambda _n: 1.0, seed=3), path)
    summary = _convert(str(path), "--base", str(tiny["sdxl"].source), "--out", str(tmp_path / "out"))
    assert summary["entries"] == len(SGM_TINY_SDXL) and summary["layers"] == {"unet": len(SGM_TINY_SDXL)}

"""A converted LoRA in `OUT/manifest.json`: a valid `lora/<stem>` entry that `zoo verify` checks and redoes."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from lora_helpers import SGM_TINY_SDXL, TinyFamily, handmade_kohya  # pyright: ignore[reportMissingImports]
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from converters._checkpoints import read_header
from converters.lora import convert_lora
from zoo.cli import main
from zoo.hub import sha256_file
from zoo.manifest import LORA_PARITY, read_manifest, validate_manifest, write_manifest

NAME = "lora/style"


def zoo(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def findings(stdout: str) -> list[dict[str, Any]]:
    return json.loads(stdout)["findings"]


@pytest.fixture(scope="module")
def kohya_tensors(tiny: dict[str, TinyFamily]) -> dict[str, torch.Tensor]:
    """A hand-built kohya LoRA for tiny SDXL (SGM names, rank 4, alpha 2): the UNet only."""
    return handmade_kohya(tiny["sdxl"].upstream("unet"), SGM_TINY_SDXL, 4, lambda _n: 2.0, seed=1)


@pytest.fixture
def style(kohya_tensors: dict[str, torch.Tensor], tmp_path: Path) -> Path:
    path = tmp_path / "loras" / "style.safetensors"
    path.parent.mkdir()
    save_file(kohya_tensors, path)
    return path


def flip_a_byte_of(path: Path, tensor: str) -> None:
    header = read_header(path)
    data = bytearray(path.read_bytes())
    data[header.data_start + header.entries[tensor].begin] ^= 0x01
    path.write_bytes(bytes(data))


def test_convert_records_a_valid_entry_with_the_right_hashes(
    tiny: dict[str, TinyFamily], style: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = convert_lora(style, tiny["sdxl"].out, out=out, scale=0.5)
    assert result.manifest == out / "manifest.json"
    manifest = read_manifest(out / "manifest.json")  # validated on read
    assert manifest.kind == "output" and list(manifest.entries) == [NAME]
    entry = manifest.entries[NAME]
    assert entry["type"] == "lora" and entry["name"] == NAME and entry["scale"] == 0.5

    [source] = entry["sources"]
    assert source["path"] == "../loras/style.safetensors" and source["role"] == "lora"
    assert source["sha256"] == sha256_file(style) == result.source_sha256
    assert source["size"] == style.stat().st_size
    assert source["format"] == "kohya" and source["ranks"] == [4]
    assert "alpha tensor in every entry: factor alpha / rank" in source["alpha"]
    assert source["license"] is None and source["unknown"]["license"]
    assert entry["license"] is None and "licence is not known" in entry["unknown"]["license"]

    [output] = entry["outputs"]
    tensors = load_file(out / "style.safetensors")
    assert output["file"] == "style.safetensors" and output["role"] == "weights"
    assert output["sha256"] == sha256_file(out / "style.safetensors")
    assert output["size"] == (out / "style.safetensors").stat().st_size
    assert output["num_tensors"] == len(tensors) == 2 * len(SGM_TINY_SDXL)
    assert output["num_params"] == sum(math.prod(t.shape) for t in tensors.values())
    assert output["dtype"] == "float32"

    base = entry["base"]
    assert base["kind"] == "folder" and base["family"] == "sdxl"
    assert (out / base["source"]).resolve() == tiny["sdxl"].out.resolve()
    with safe_open(str(out / "style.safetensors"), "pt") as handle:
        metadata = handle.metadata()
    assert base["models"] == [
        {
            "component": "unet",
            "conversion": "sdxl.unet",
            "config_sha256": metadata["zoo.lora.unet.config_sha256"],
            "keymap_sha256": metadata["zoo.lora.unet.keymap_sha256"],
        }
    ]
    assert entry["convert"] == {
        "source": "../loras/style.safetensors",
        "base": base["source"],
        "scale": 0.5,
        "dtype": "keep",
        "unknown": {},
    }
    assert entry["parity"] is None and entry["unknown"]["parity"] == LORA_PARITY


def test_a_dry_run_records_nothing(tiny: dict[str, TinyFamily], style: Path, tmp_path: Path) -> None:
    result = convert_lora(style, tiny["sdxl"].out, out=tmp_path / "out", dry_run=True)
    assert result.manifest is None and not (tmp_path / "out").exists()


def test_verify_hashes_reproduce_and_parity_pass(
    tiny: dict[str, TinyFamily], style: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    code, stdout, stderr = zoo(
        "convert", "lora", str(style), "--base", str(tiny["sdxl"].out), "--out", str(out), "--json"
    )
    assert code == 0, stderr
    assert json.loads(stdout)["manifest"] == str(out / "manifest.json")
    code, stdout, stderr = zoo(
        "verify", str(out), "--hashes", "--reproduce", "--parity", "--strict", "--json"
    )
    assert code == 0, stderr
    base = read_manifest(out / "manifest.json").entries[NAME]["base"]["source"]
    assert [(f["check"], f["subject"], f["status"]) for f in findings(stdout)] == [
        ("hashes", "style.safetensors", "ok"),
        ("hashes", "../loras/style.safetensors", "ok"),
        ("reproduce", f"base {base}", "ok"),
        ("reproduce", "style.safetensors", "ok"),
        ("parity", "style.safetensors", "not applicable"),
    ]
    # Names, the `lora` prefix and the file itself select the entry too.
    for target in (NAME, "lora"):
        code, stdout, stderr = zoo("verify", target, "--out", str(out), "--json")
        assert code == 0 and {f["entry"] for f in findings(stdout)} == {NAME}, stderr
    code, stdout, stderr = zoo("verify", str(out / "style.safetensors"), "--json")
    assert code == 0 and {f["entry"] for f in findings(stdout)} == {NAME}, stderr


def test_a_one_byte_change_in_the_lora_output_fails_naming_the_file(
    tiny: dict[str, TinyFamily], style: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    convert_lora(style, tiny["sdxl"].out, out=out)
    tensor = sorted(read_header(out / "style.safetensors").entries)[2]
    flip_a_byte_of(out / "style.safetensors", tensor)
    code, _, stderr = zoo("verify", str(out), "--hashes")
    assert code == 1 and "style.safetensors" in stderr and "sha256" in stderr
    code, stdout, _ = zoo("verify", str(out), "--reproduce", "--json")
    assert code == 1
    [failed] = [f for f in findings(stdout) if f["fatal"]]
    assert failed["subject"] == "style.safetensors" and failed["tensor"] == tensor


def test_a_changed_lora_file_blocks_reproduce(
    tiny: dict[str, TinyFamily], style: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    convert_lora(style, tiny["sdxl"].out, out=out)
    tensors = load_file(style)
    key = sorted(tensors)[0]
    tensors[key] = tensors[key] + 1
    save_file(tensors, style)
    code, stdout, _ = zoo("verify", str(out), "--reproduce", "--json")
    assert code == 1
    [failed] = findings(stdout)
    assert failed["subject"] == "../loras/style.safetensors" and "cannot reproduce" in failed["detail"]


def test_a_family_base_is_recorded_by_name_and_reproduced(tmp_path: Path) -> None:
    """`--base sdxl`: the full-size configs, traced on meta (once per process)."""
    path = tmp_path / "full.safetensors"
    save_file(
        {
            "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_down.weight": torch.ones(1, 640),
            "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_up.weight": torch.ones(640, 1),
            "lora_te2_text_model_encoder_layers_31_mlp_fc2.lora_down.weight": torch.ones(1, 5120),
            "lora_te2_text_model_encoder_layers_31_mlp_fc2.lora_up.weight": torch.ones(1280, 1),
        },
        path,
    )
    convert_lora(path, "sdxl", out=tmp_path / "out")
    entry = read_manifest(tmp_path / "out" / "manifest.json").entries["lora/full"]
    assert entry["base"]["kind"] == "family" and entry["base"]["source"] == entry["convert"]["base"] == "sdxl"
    assert [m["conversion"] for m in entry["base"]["models"]] == ["sdxl.unet", "sdxl.text_encoder"]
    assert entry["sources"][0]["alpha"].startswith("no alpha: factor 1")
    code, stdout, stderr = zoo("verify", str(tmp_path / "out"), "--reproduce", "--strict", "--json")
    assert code == 0, stderr
    assert [f["status"] for f in findings(stdout)] == ["ok", "ok"]


def test_a_peft_lora_records_its_adapter_config(
    tiny: dict[str, TinyFamily], kohya_tensors: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    """PEFT takes alpha from adapter_config.json next to the file: a second source, checked and needed."""
    unet = tiny["sdxl"].upstream("unet")
    peft: dict[str, torch.Tensor] = {}
    for module in (
        "down_blocks.1.attentions.0.proj_in",
        "mid_block.attentions.0.transformer_blocks.0.attn2.to_k",
    ):
        out_features, in_features = unet.get_submodule(module).weight.shape[:2]
        peft[f"base_model.model.{module}.lora_A.weight"] = torch.randn(4, in_features)
        peft[f"base_model.model.{module}.lora_B.weight"] = torch.randn(out_features, 4)
    folder = tmp_path / "peft"
    folder.mkdir()
    save_file(peft, folder / "adapter_model.safetensors")
    (folder / "adapter_config.json").write_text(json.dumps({"r": 4, "lora_alpha": 8}))
    out = tmp_path / "out"
    convert_lora(folder / "adapter_model.safetensors", tiny["sdxl"].source, out=out)
    entry = read_manifest(out / "manifest.json").entries["lora/adapter_model"]
    assert [(s["role"], s["path"]) for s in entry["sources"]] == [
        ("lora", "../peft/adapter_model.safetensors"),
        ("config", "../peft/adapter_config.json"),
    ]
    assert "from adapter_config.json: factor alpha / rank" in entry["sources"][0]["alpha"]
    code, _, stderr = zoo("verify", str(out), "--hashes", "--reproduce", "--strict")
    assert code == 0, stderr
    (folder / "adapter_config.json").write_text(json.dumps({"r": 4, "lora_alpha": 4}))
    code, _, stderr = zoo("verify", str(out), "--reproduce")
    assert code == 1 and "adapter_config.json" in stderr and "cannot reproduce" in stderr


def test_a_folder_of_models_and_loras_validates_and_verifies(
    tiny: dict[str, TinyFamily], style: Path, kohya_tensors: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    """LoRAs converted into the folder `zoo convert` wrote, onto those very outputs: one manifest for all."""
    out = Path(shutil.copytree(tiny["sdxl"].out, tmp_path / "out", symlinks=True))
    other = tmp_path / "loras" / "other.safetensors"
    save_file({k: v * 2 for k, v in kohya_tensors.items()}, other)
    convert_lora(style, out, out=out)
    convert_lora(other, out, out=out, scale=0.25)
    data = json.loads((out / "manifest.json").read_text())
    assert validate_manifest(data) == []
    entries = data["conversions"]
    assert sorted(entries) == [
        "lora/other",
        "lora/style",
        "sdxl.autoencoder",
        "sdxl.text_encoder",
        "sdxl.unet",
    ]
    assert all("type" not in entries[name] for name in entries if name.startswith("sdxl."))
    assert entries["lora/style"]["base"]["source"] == "."
    code, stdout, stderr = zoo("verify", str(out), "--hashes", "--strict", "--json")
    assert code == 0, stderr  # the two LoRA files beside each other are not "extra"
    assert {f["entry"] for f in findings(stdout)} == set(entries)
    code, stdout, stderr = zoo(
        "verify", "lora", "sdxl.unet", "--out", str(out), "--reproduce", "--parity", "--json"
    )
    assert code == 0, stderr
    statuses = {(f["entry"], f["check"]): f["status"] for f in findings(stdout)}
    assert statuses[("lora/other", "parity")] == "not applicable"
    assert statuses[("sdxl.unet", "parity")] == "ok"
    assert statuses[("lora/style", "reproduce")] == "ok"
    (out / "notes.txt").write_text("hello")
    code, _, stderr = zoo("verify", "lora/style", "--out", str(out), "--strict")
    assert code == 1 and "notes.txt" in stderr


def test_reproduce_names_a_base_that_is_not_the_recorded_one(
    tiny: dict[str, TinyFamily], style: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    convert_lora(style, tiny["sdxl"].out, out=out)
    data = read_manifest(out / "manifest.json").data
    data["conversions"][NAME]["base"]["models"][0]["keymap_sha256"] = "0" * 64
    write_manifest(out / "manifest.json", data)
    code, stdout, _ = zoo("verify", str(out), "--reproduce", "--json")
    assert code == 1
    [failed] = [f for f in findings(stdout) if f["fatal"]]
    assert failed["subject"].startswith("base ") and "unet keymap_sha256 is now" in failed["detail"]


def test_a_base_in_memory_is_recorded_as_unknown(
    tiny: dict[str, TinyFamily], style: Path, tmp_path: Path
) -> None:
    """A `LoraBase` object has no name or folder to convert against again: said so, fatal only with --strict."""
    from converters.lora import resolve_base

    out = tmp_path / "out"
    convert_lora(style, resolve_base(tiny["sdxl"].out), out=out)
    entry = read_manifest(out / "manifest.json").entries[NAME]
    assert entry["base"]["kind"] == "memory" and entry["base"]["source"] is None
    assert entry["convert"]["base"] is None and "in memory" in entry["convert"]["unknown"]["base"]
    code, stdout, _ = zoo("verify", str(out), "--reproduce", "--json")
    assert code == 0 and [f["status"] for f in findings(stdout)] == ["unknown"]
    code, _, stderr = zoo("verify", str(out), "--reproduce", "--strict")
    assert code == 1 and "cannot reproduce" in stderr


def test_a_recorded_lora_publishes_with_a_declared_licence(
    tiny: dict[str, TinyFamily], style: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "out"
    convert_lora(style, tiny["sdxl"].out, out=out)
    args = ["--license", "mit", "--base-model", "me/base", "--dry-run", "--json"]
    result = CliRunner().invoke(main, ["publish", NAME, "--repo", "me/style", "--out", str(out), *args])
    code, stdout, stderr = result.exit_code, result.stdout, result.stderr
    assert code == 0, (stderr, result.exc_info)
    assert "lora" in stdout and "Traceback" not in stderr

"""Stable Diffusion conversions beyond what every conversion is checked for: refusing the wrong family,
unknown tensors and float16 overflow, the SDXL VAE's float16 warning, Lightning-style `.ckpt` files.
(Parity, determinism and the rest are in `test_every_conversion.py`, for every declared conversion.)"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import zoo
from converters._convert.by_name import ConvertRun, convert
from zoo.errors import ConfigError, CoverageError, TensorValueError

TinyConversions = Callable[..., ConvertRun]


def test_wrong_family_is_refused_and_nothing_is_written(
    tiny_converted: TinyConversions, tmp_path: Path
) -> None:
    source = tiny_converted("sd15").synthetic_source
    for name in ("sdxl.unet", "sdxl.autoencoder"):
        with pytest.raises(ConfigError, match="not a sdxl"):
            convert(name, out=tmp_path, source=str(source))
    with pytest.raises(ConfigError, match="several folders"):
        convert("sdxl.text_encoder", out=tmp_path, source=str(Path(str(source)) / "text_encoder"))
    assert list(tmp_path.iterdir()) == []


def test_unknown_tensor_in_the_source_is_an_error(tiny_converted: TinyConversions, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    source = Path(str(tiny_converted("sd15").synthetic_source)) / "vae"
    copy = tmp_path / "vae"
    copy.mkdir()
    (copy / "config.json").write_bytes((source / "config.json").read_bytes())
    tensors = load_file(source / "diffusion_pytorch_model.safetensors")
    tensors["decoder.extra.weight"] = torch.zeros(2)
    save_file(tensors, copy / "diffusion_pytorch_model.safetensors")
    with pytest.raises(CoverageError, match="does not have") as caught:
        convert("sd15.autoencoder", out=tmp_path / "out", source=str(copy))
    assert "diffusion_pytorch_model.safetensors" in str(caught.value)
    assert not (tmp_path / "out" / "sd15.autoencoder" / "model.safetensors").exists()


def test_float16_overflow_is_an_error(tiny_converted: TinyConversions, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    source = Path(str(tiny_converted("sd15").synthetic_source)) / "vae"
    copy = tmp_path / "vae"
    copy.mkdir()
    (copy / "config.json").write_bytes((source / "config.json").read_bytes())
    tensors = load_file(source / "diffusion_pytorch_model.safetensors")
    tensors["decoder.conv_out.bias"][0] = 1e6
    save_file(tensors, copy / "diffusion_pytorch_model.safetensors")
    with pytest.raises(TensorValueError, match="conv_out"):
        convert("sd15.autoencoder", out=tmp_path / "out", source=str(copy), dtype=torch.float16)
    assert not (tmp_path / "out" / "sd15.autoencoder" / "model.safetensors").exists()


def test_float16_output_and_the_sdxl_vae_warning(tiny_converted: TinyConversions, tmp_path: Path) -> None:
    run = convert(
        "sdxl.autoencoder",
        out=tmp_path,
        source=str(tiny_converted("sdxl").synthetic_source),
        dtype=torch.float16,
    )
    assert run.results[0].dtype == "float16"
    assert "fp16-fix" in run.results[0].warnings[0]
    model = zoo.load(str(tmp_path / "sdxl.autoencoder"))
    assert next(model.parameters()).dtype == torch.float16  # pyright: ignore[reportAttributeAccessIssue]


def test_dry_run_writes_nothing(tiny_converted: TinyConversions, tmp_path: Path) -> None:
    run = convert("sd15", out=tmp_path, source=str(tiny_converted("sd15").synthetic_source), dry_run=True)
    assert all(result.sha256 is None and result.dry_run for result in run.results)
    assert not any(tmp_path.iterdir())


def test_lightning_pickle_checkpoint_converts_to_the_same_bytes(
    tiny_converted: TinyConversions, tmp_path: Path
) -> None:
    from safetensors.torch import load_file

    run = tiny_converted("sd15", "single-file")
    ckpt = (
        tmp_path / "v1-5-tiny.ckpt"
    )  # the LDM-era layout: a pickle holding {"state_dict": ..., "epoch": ...}
    torch.save({"state_dict": load_file(str(run.synthetic_source)), "epoch": 3, "global_step": 100}, ckpt)
    again = convert("sd15", out=tmp_path / "out", source=str(ckpt))
    assert [r.sha256 for r in again.results] == [r.sha256 for r in run.results]

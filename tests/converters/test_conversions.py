"""Every declared component, end to end on tiny synthetic sources: convert, load, parity, determinism."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import zoo
from converters import registry
from converters.parity import measure_parity
from converters.run import ConvertRun, convert
from converters.sources import resolve_source
from zoo.errors import ConfigError, CoverageError, TensorValueError

FAMILIES = ("sdxl", "sd15")
COMPONENTS = [c.name for family in FAMILIES for c in registry.family_conversions(family)]


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ConvertRun]:
    out = tmp_path_factory.mktemp("converted")
    return {family: convert(family, out=out, synthetic="tiny") for family in FAMILIES}


@pytest.fixture(scope="module")
def converted_single_file(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ConvertRun]:
    out = tmp_path_factory.mktemp("converted-single-file")
    return {
        family: convert(family, out=out, synthetic="tiny", synthetic_layout="single-file")
        for family in FAMILIES
    }


def _result(converted: dict[str, ConvertRun], name: str):
    run = converted[name.split(".")[0]]
    return run, next(r for r in run.results if r.name == name)


@pytest.mark.parametrize("name", COMPONENTS)
def test_parity_with_the_upstream_model(converted: dict[str, ConvertRun], name: str) -> None:
    run, result = _result(converted, name)
    conversion = registry.resolve(name)[0]
    assert run.synthetic_source is not None
    source = resolve_source(conversion, run.synthetic_source)
    parity = measure_parity(conversion, source, result.folder)
    print(f"{name}: relative errors {parity.relative_errors}")
    assert parity.max_relative_error <= 1e-5


@pytest.mark.parametrize("name", COMPONENTS)
def test_parity_from_the_original_single_file(
    converted: dict[str, ConvertRun], converted_single_file: dict[str, ConvertRun], name: str
) -> None:
    run, result = _result(converted_single_file, name)
    conversion = registry.resolve(name)[0]
    assert run.synthetic_source is not None and run.synthetic_source.is_file()
    parity = measure_parity(conversion, resolve_source(conversion, run.synthetic_source), result.folder)
    assert parity.max_relative_error <= 1e-5
    # The same weights in another layout convert to the same bytes.
    assert result.sha256 == _result(converted, name)[1].sha256


@pytest.mark.parametrize("name", COMPONENTS)
def test_output_folder_is_self_describing(converted: dict[str, ConvertRun], name: str) -> None:
    _run, result = _result(converted, name)
    model = zoo.load(str(result.folder))
    assert type(model).__module__.startswith("zoo.foundationals.")
    assert sum(p.numel() for p in model.parameters()) == result.params  # pyright: ignore[reportAttributeAccessIssue]
    assert all(t.device.type == "cpu" for t in model.state_dict().values())  # pyright: ignore[reportAttributeAccessIssue]


def test_conversion_is_deterministic_across_processes(
    converted: dict[str, ConvertRun], tmp_path: Path
) -> None:
    run, result = _result(converted, "sdxl.unet")
    command = [sys.executable, "-m", "zoo.cli", "convert", "sdxl.unet", "--source", str(run.synthetic_source)]
    subprocess.run([*command, "--out", str(tmp_path)], check=True, capture_output=True)
    again = (tmp_path / "sdxl.unet" / "model.safetensors").read_bytes()
    assert again == (result.folder / "model.safetensors").read_bytes()
    assert (tmp_path / "sdxl.unet" / "config.json").read_bytes() == (
        result.folder / "config.json"
    ).read_bytes()


def test_wrong_family_is_refused_and_nothing_is_written(
    converted: dict[str, ConvertRun], tmp_path: Path
) -> None:
    source = converted["sd15"].synthetic_source
    for name in ("sdxl.unet", "sdxl.autoencoder"):
        with pytest.raises(ConfigError, match="not a sdxl"):
            convert(name, out=tmp_path, source=str(source))
    with pytest.raises(ConfigError, match="several folders"):
        convert("sdxl.text_encoder", out=tmp_path, source=str(Path(str(source)) / "text_encoder"))
    assert list(tmp_path.iterdir()) == []


def test_unknown_tensor_in_the_source_is_an_error(converted: dict[str, ConvertRun], tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    source = Path(str(converted["sd15"].synthetic_source)) / "vae"
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


def test_float16_overflow_is_an_error(converted: dict[str, ConvertRun], tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    source = Path(str(converted["sd15"].synthetic_source)) / "vae"
    copy = tmp_path / "vae"
    copy.mkdir()
    (copy / "config.json").write_bytes((source / "config.json").read_bytes())
    tensors = load_file(source / "diffusion_pytorch_model.safetensors")
    tensors["decoder.conv_out.bias"][0] = 1e6
    save_file(tensors, copy / "diffusion_pytorch_model.safetensors")
    with pytest.raises(TensorValueError, match="conv_out"):
        convert("sd15.autoencoder", out=tmp_path / "out", source=str(copy), dtype=torch.float16)
    assert not (tmp_path / "out" / "sd15.autoencoder" / "model.safetensors").exists()


def test_float16_output_and_the_sdxl_vae_warning(converted: dict[str, ConvertRun], tmp_path: Path) -> None:
    run = convert(
        "sdxl.autoencoder", out=tmp_path, source=str(converted["sdxl"].synthetic_source), dtype=torch.float16
    )
    assert run.results[0].dtype == "float16"
    assert "fp16-fix" in run.results[0].warnings[0]
    model = zoo.load(str(tmp_path / "sdxl.autoencoder"))
    assert next(model.parameters()).dtype == torch.float16  # pyright: ignore[reportAttributeAccessIssue]


def test_dry_run_writes_nothing(converted: dict[str, ConvertRun], tmp_path: Path) -> None:
    run = convert("sd15", out=tmp_path, source=str(converted["sd15"].synthetic_source), dry_run=True)
    assert all(result.sha256 is None and result.dry_run for result in run.results)
    assert not any(tmp_path.iterdir())


def test_lightning_pickle_checkpoint_converts_to_the_same_bytes(
    converted_single_file: dict[str, ConvertRun], tmp_path: Path
) -> None:
    from safetensors.torch import load_file

    run = converted_single_file["sd15"]
    ckpt = (
        tmp_path / "v1-5-tiny.ckpt"
    )  # the LDM-era layout: a pickle holding {"state_dict": ..., "epoch": ...}
    torch.save({"state_dict": load_file(str(run.synthetic_source)), "epoch": 3, "global_step": 100}, ckpt)
    again = convert("sd15", out=tmp_path / "out", source=str(ckpt))
    assert [r.sha256 for r in again.results] == [r.sha256 for r in run.results]

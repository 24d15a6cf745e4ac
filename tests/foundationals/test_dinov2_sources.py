"""DINOv2 sources: transformers folders in 4.x and 5.x names, picking the release a source holds, and
the files that must be refused (another release, truncated, unknown or missing tensors) with one
clear error and nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

from converters import registry
from converters._convert.by_name import convert
from converters._convert.pick import pick_conversion
from converters._reports.file_report import inspect_file
from converters.declaration import upstream_model
from converters.dinov2.transformers_config import upstream_config
from tests.foundationals.dinov2_references import original_state_dict
from zoo.errors import ConfigError, CoverageError, FormatError, ZooError
from zoo.foundationals.dinov2 import DINOv2Config

# ViT-S/14's width and kind, one layer and a 2 × 2 grid: a small file of a released size.
SMALL = DINOv2Config(image_size=28, hidden_size=384, num_layers=1, num_heads=6, feedforward_size=1536)


def _transformers_folder(config: DINOv2Config, folder: Path, new_names: bool = False) -> Path:
    """A transformers folder, saved with the 4.x names (as the Hub's) or the 5.x ones."""
    conversion = registry.all_conversions()["dinov2.vitb14"]  # any: the class comes from the config
    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(0)
    model = upstream_model(conversion, {conversion.parts[0].subfolder: upstream_config(config)})
    model.save_pretrained(folder, save_original_format=not new_names)  # pyright: ignore[reportCallIssue]
    return folder


def _original_file(config: DINOv2Config, path: Path, state: dict[str, torch.Tensor] | None = None) -> Path:
    torch.save(original_state_dict(config) if state is None else state, path)
    return path


def _refused(name: str, source: Path, out: Path, error: type[ZooError], match: str) -> ZooError:
    with pytest.raises(error, match=match) as caught:
        convert(name, out=out, source=str(source))
    print(f"{name}: {caught.value.one_line()} [hint: {caught.value.hint}]")
    assert not out.exists(), "nothing may be written"
    return caught.value


def test_transformers_4_and_5_names_give_the_same_bytes(tmp_path: Path) -> None:
    """ViT-g's fused 4.x SwiGLU projection (`mlp.weights_in`) is split as 5.x's gate and up."""
    config = DINOv2Config.tiny(registers=True, feedforward="swiglu")
    old = _transformers_folder(config, tmp_path / "old")
    new = _transformers_folder(config, tmp_path / "new", new_names=True)
    assert any("weights_in" in key for key in load_file(old / "model.safetensors"))
    assert any("gate_proj" in key for key in load_file(new / "model.safetensors"))
    runs = [
        convert("dinov2.vitg14_reg4", out=tmp_path / f"out-{folder.name}", source=str(folder))
        for folder in (old, new)
    ]
    assert runs[0].results[0].sha256 == runs[1].results[0].sha256


def test_naming_the_family_converts_the_release_the_source_holds(tmp_path: Path) -> None:
    folder = _transformers_folder(SMALL, tmp_path / "small")
    original = _original_file(SMALL.with_registers(True), tmp_path / "small_reg4.pth")
    assert [r.name for r in convert("dinov2", out=tmp_path / "a", source=str(folder)).results] == [
        "dinov2.vits14"
    ]
    assert [r.name for r in convert("dinov2", out=tmp_path / "b", source=str(original)).results] == [
        "dinov2.vits14_reg4"
    ]
    declared = registry.family("dinov2").declared
    assert pick_conversion(declared, "facebook/dinov2-with-registers-giant").name == "dinov2.vitg14_reg4"


def test_a_size_no_release_has_is_converted_by_naming_a_conversion_of_its_kind(tmp_path: Path) -> None:
    source = _original_file(DINOv2Config.tiny(), tmp_path / "tiny.pth")
    error = _refused("dinov2", source, tmp_path / "out", ConfigError, "fits several conversions")
    assert error.hint is not None and "name one: zoo convert dinov2.vits14" in error.hint
    assert convert("dinov2.vitb14", out=tmp_path / "named", source=str(source)).results[0].params == 475_136


def test_a_release_offered_as_another_is_refused_naming_both(tmp_path: Path) -> None:
    original = _original_file(SMALL, tmp_path / "small.pth")
    error = _refused("dinov2.vitb14", original, tmp_path / "out", ConfigError, "ViT-S/14.*ViT-B/14")
    assert "convert it as dinov2.vits14" in error.message
    folder = _transformers_folder(SMALL.with_registers(True), tmp_path / "small_reg4")
    _refused(
        "dinov2.vits14",
        folder,
        tmp_path / "out",
        ConfigError,
        "4 registers.*convert it as dinov2.vits14_reg4",
    )


def test_a_truncated_file_is_refused(tmp_path: Path) -> None:
    whole = _original_file(DINOv2Config.tiny(), tmp_path / "whole.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(whole[: len(whole) // 2])
    _refused("dinov2.vits14", tmp_path / "cut.pth", tmp_path / "out", FormatError, "damaged")
    folder = _transformers_folder(DINOv2Config.tiny(), tmp_path / "folder")
    weights = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(weights[: len(weights) - 1000])
    _refused("dinov2.vits14", folder, tmp_path / "out", FormatError, "model.safetensors")


def test_an_unknown_or_missing_tensor_is_refused_by_name(tmp_path: Path) -> None:
    state = original_state_dict(DINOv2Config.tiny())
    source = _original_file(
        DINOv2Config.tiny(), tmp_path / "head.pth", {**state, "head.weight": torch.zeros(3, 128)}
    )
    error = _refused("dinov2.vits14", source, tmp_path / "out", FormatError, "head.weight")
    assert error.file == str(source)
    del state["blocks.1.ls2.gamma"]
    source = _original_file(DINOv2Config.tiny(), tmp_path / "missing.pth", state)
    _refused("dinov2.vits14", source, tmp_path / "out", CoverageError, "layer_scale2")
    folder = _transformers_folder(DINOv2Config.tiny(), tmp_path / "folder")
    tensors = load_file(folder / "model.safetensors")
    save_file({**tensors, "classifier.weight": torch.zeros(2, 128)}, folder / "model.safetensors")
    _refused("dinov2.vits14", folder, tmp_path / "out", CoverageError, "classifier.weight")


def test_inspect_tells_the_layouts(tmp_path: Path) -> None:
    original = inspect_file(_original_file(SMALL, tmp_path / "small.pth"))
    assert (original.family, original.conversion) == ("dinov2", "dinov2")
    folder = _transformers_folder(SMALL, tmp_path / "small")
    transformers = inspect_file(folder / "model.safetensors")
    assert transformers.kind is not None and "ViT-S/14" in transformers.kind
    assert transformers.conversion == "dinov2.vits14"


def test_a_transformers_file_alone_is_sent_to_its_folder(tmp_path: Path) -> None:
    folder = _transformers_folder(SMALL, tmp_path / "small")
    error = _refused("dinov2", folder / "model.safetensors", tmp_path / "out", ConfigError, "original")
    assert (
        error.file == str(folder / "model.safetensors") and error.hint is not None and "folder" in error.hint
    )

"""ControlNet and T2I-Adapter sources as users have them: the family name converts what the source is,
and a truncated file, a file of another kind or an SDXL ControlNet named as SD 1.5's is one clear error
with nothing written."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from converters._convert.by_name import ConvertRun, convert
from zoo.errors import ZooError

TinyConversions = Callable[..., ConvertRun]


def _source(run: ConvertRun) -> Path:
    assert run.synthetic_source is not None
    return run.synthetic_source


@pytest.mark.parametrize("name", ["controlnet.sd15", "controlnet.sdxl"])
def test_the_family_converts_the_folder_it_is_given(
    tiny_converted: TinyConversions, name: str, tmp_path: Path
) -> None:
    folder = _source(tiny_converted(name)) / "controlnet"
    run = convert("controlnet", out=tmp_path, source=str(folder), dry_run=True)
    assert [result.name for result in run.results] == [name]


@pytest.mark.parametrize("name", ["t2i_adapter.sd15_full", "t2i_adapter.sd15_light"])
def test_the_family_converts_the_original_file_it_is_given(
    tiny_converted: TinyConversions, name: str, tmp_path: Path
) -> None:
    run = convert(
        "t2i_adapter", out=tmp_path, source=str(_source(tiny_converted(name, "single-file"))), dry_run=True
    )
    assert [result.name for result in run.results] == [name]


def test_a_truncated_original_controlnet_is_refused(tiny_converted: TinyConversions, tmp_path: Path) -> None:
    original = _source(tiny_converted("controlnet.sd15", "single-file"))
    broken = tmp_path / "control_v11p_sd15_canny.safetensors"
    broken.write_bytes(original.read_bytes()[: original.stat().st_size // 2])
    with pytest.raises(ZooError) as error:
        convert("controlnet.sd15", out=tmp_path / "out", source=str(broken))
    assert str(broken) in str(error.value)
    assert not (tmp_path / "out" / "controlnet.sd15").exists()


def test_a_file_of_another_kind_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "not-a-controlnet.safetensors"
    save_file({"encoder.layer.0.weight": torch.zeros(2, 2)}, other)
    with pytest.raises(ZooError, match="control_model"):
        convert("controlnet.sd15", out=tmp_path / "out", source=str(other))
    assert not (tmp_path / "out" / "controlnet.sd15").exists()


def test_an_sdxl_controlnet_named_as_sd15_is_refused(tiny_converted: TinyConversions, tmp_path: Path) -> None:
    folder = Path(shutil.copytree(_source(tiny_converted("controlnet.sdxl")) / "controlnet", tmp_path / "cn"))
    with pytest.raises(ZooError, match="addition_embed_type"):
        convert("controlnet.sd15", out=tmp_path / "out", source=str(folder))
    assert not (tmp_path / "out" / "controlnet.sd15").exists()

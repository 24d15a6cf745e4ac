"""`zoo generate --controlnet DIR[:SCALE] --t2i-adapter DIR[:SCALE] --control-image IMG`: the controls
converted by `zoo convert` take part, are recorded in the PNG, and a wrong folder is one clear error."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from converters._convert.by_name import ConvertRun
from zoo.cli import main
from zoo.png import write_png

TinyConversions = Callable[..., ConvertRun]


@pytest.fixture(scope="module")
def out(tiny_converted: TinyConversions, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("generate-controls")
    folder = tiny_converted("sdxl").results[0].folder.parent
    out = Path(shutil.copytree(folder, root / "out", ignore=shutil.ignore_patterns("synthetic-source")))
    for name in ("controlnet.sdxl", "t2i_adapter.sdxl"):
        shutil.copytree(tiny_converted(name).results[0].folder, root / "controls" / name)
    generator = torch.Generator().manual_seed(0)
    write_png(root / "edges.png", torch.rand(1, 3, 40, 48, generator=generator))
    return out


def _generate(out: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        main, ["generate", str(out), "--prompt", "a house", "--steps", "2", "--json", *args]
    )
    return result.exit_code, result.stdout, result.stderr


def test_controls_take_part_and_are_recorded(out: Path) -> None:
    controls, image = out.parent / "controls", out.parent / "edges.png"
    code, stdout, stderr = _generate(
        out,
        "--controlnet", f"{controls / 'controlnet.sdxl'}:0.7",
        "--t2i-adapter", f"{controls / 't2i_adapter.sdxl'}:0.5",
        "--control-image", str(image),
        "--output", str(out.parent / "controlled.png"),
    )  # fmt: skip
    assert code == 0, stderr
    recorded = json.loads(stdout)["controls"]
    assert [(c["kind"], c["scale"]) for c in recorded] == [("ControlNet", 0.7), ("T2IAdapter", 0.5)]
    plain_code, _, plain_err = _generate(out, "--output", str(out.parent / "plain.png"))
    assert plain_code == 0, plain_err
    assert (out.parent / "controlled.png").read_bytes() != (out.parent / "plain.png").read_bytes()


def test_a_folder_of_another_kind_is_one_clear_error(out: Path) -> None:
    controls, image = out.parent / "controls", out.parent / "edges.png"
    code, _, stderr = _generate(
        out, "--controlnet", str(controls / "t2i_adapter.sdxl"), "--control-image", str(image)
    )
    assert code != 0 and "not a ControlNet output folder" in stderr and "Traceback" not in stderr


def test_a_control_without_an_image_is_refused(out: Path) -> None:
    code, _, stderr = _generate(out, "--controlnet", str(out.parent / "controls" / "controlnet.sdxl"))
    assert code != 0 and "--control-image" in stderr

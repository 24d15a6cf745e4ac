"""`zoo generate --ip-adapter DIR[:SCALE] --image IMG`: the IP-Adapter `zoo convert` wrote takes part with
the image encoder it reads (found in OUT by the feature it gives), is recorded in the PNG, and at scale
0 gives the plain image exactly; what is missing or wrong is one clear error."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from converters._convert.by_name import ConvertRun
from zoo.cli import main
from zoo.png import write_png

TinyConversions = Callable[..., ConvertRun]


@pytest.fixture(scope="module")
def out(tiny_converted: TinyConversions, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("generate-image-prompts")
    folder = tiny_converted("sdxl").results[0].folder.parent
    out = Path(shutil.copytree(folder, root / "out", ignore=shutil.ignore_patterns("synthetic-source")))
    # Two encoders: only ViT-bigG/14 (its tiny twin) gives the feature ip_adapter.sdxl reads.
    for name in ("clip_vision.vit_big_g14", "clip_vision.vit_h14", "ip_adapter.sdxl"):
        shutil.copytree(tiny_converted(name).results[0].folder, out / name)
    write_png(root / "style.png", torch.rand(1, 3, 36, 44, generator=torch.Generator().manual_seed(0)))
    return out


def _generate(out: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        main, ["generate", str(out), "--prompt", "a house", "--steps", "2", "--json", *args]
    )
    return result.exit_code, result.stdout, result.stderr


def _pixels(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def test_an_image_prompt_takes_part_is_recorded_and_scale_0_is_the_plain_image(out: Path) -> None:
    image, adapter = out.parent / "style.png", out / "ip_adapter.sdxl"
    made = {}
    for label, spec in (("prompted", f"{adapter}:0.8"), ("off", f"{adapter}:0")):
        made[label] = out.parent / f"{label}.png"
        code, stdout, stderr = _generate(
            out, "--ip-adapter", spec, "--image", str(image), "--output", str(made[label])
        )
        assert code == 0, stderr
        (recorded,) = json.loads(stdout)["ip_adapters"]
        assert Path(recorded["image_encoder"]).name == "clip_vision.vit_big_g14"
    made["plain"] = out.parent / "plain.png"
    code, _, stderr = _generate(out, "--output", str(made["plain"]))
    assert code == 0, stderr
    assert np.array_equal(_pixels(made["off"]), _pixels(made["plain"]))
    assert not np.array_equal(_pixels(made["prompted"]), _pixels(made["plain"]))


def test_without_a_fitting_image_encoder_the_error_says_which_to_convert(out: Path, tmp_path: Path) -> None:
    bare = Path(
        shutil.copytree(out, tmp_path / "out", ignore=shutil.ignore_patterns("clip_vision.vit_big_g14"))
    )
    code, _, stderr = _generate(
        bare, "--ip-adapter", str(bare / "ip_adapter.sdxl"), "--image", str(out.parent / "style.png")
    )
    assert code != 0 and "no converted CLIP image encoder" in stderr and "Traceback" not in stderr
    assert "clip_vision.vit_big_g14" in stderr


def test_an_encoder_of_another_width_named_explicitly_is_refused(out: Path) -> None:
    code, _, stderr = _generate(
        out, "--ip-adapter", str(out / "ip_adapter.sdxl"), "--image", str(out.parent / "style.png"),
        "--image-encoder", str(out / "clip_vision.vit_h14"),
    )  # fmt: skip
    assert code != 0 and "32 wide" in stderr and "24 wide" in stderr


def test_an_ip_adapter_without_an_image_and_another_folder_kind_are_refused(out: Path) -> None:
    code, _, stderr = _generate(out, "--ip-adapter", str(out / "ip_adapter.sdxl"))
    assert code != 0 and "--image" in stderr
    code, _, stderr = _generate(
        out, "--ip-adapter", str(out / "clip_vision.vit_h14"), "--image", str(out.parent / "style.png")
    )
    assert code != 0 and "not an IP-Adapter output folder" in stderr

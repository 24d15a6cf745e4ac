"""`zoo generate OUT --prompt TEXT`: a PNG from converted models, its parameters in its metadata, and one
clear error for each thing that can be missing."""

from __future__ import annotations

import json
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from converters import registry
from converters._convert.by_name import ConvertRun
from zoo.cli import main

TinyConversions = Callable[..., ConvertRun]


def _text_chunks(path: Path) -> dict[str, str]:
    data, chunks, index = path.read_bytes(), {}, 8
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    while index < len(data):
        (length,) = struct.unpack(">I", data[index : index + 4])
        kind, body = data[index + 4 : index + 8], data[index + 8 : index + 8 + length]
        if kind == b"tEXt":
            key, _, value = body.partition(b"\0")
            chunks[key.decode("latin-1")] = value.decode("latin-1")
        index += 12 + length
    return chunks


def _families_with_pipelines() -> list[str]:
    return [name for name, family in registry.families().items() if family.pipeline_class]


@pytest.fixture(params=_families_with_pipelines())
def out(request: pytest.FixtureRequest, tiny_converted: TinyConversions, tmp_path: Path) -> Path:
    folder = tiny_converted(request.param).results[0].folder.parent
    return Path(shutil.copytree(folder, tmp_path / "out", ignore=shutil.ignore_patterns("synthetic-source")))


def _generate(out: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        main, ["generate", str(out), "--prompt", "a lighthouse", "--steps", "2", *args]
    )
    return result.exit_code, result.stdout, result.stderr


def test_writes_a_png_with_its_parameters(out: Path, tmp_path: Path) -> None:
    image = tmp_path / "image.png"
    code, stdout, stderr = _generate(out, "--seed", "3", "--solver", "ddim", "--output", str(image), "--json")
    assert code == 0, stderr
    summary = json.loads(stdout)
    parameters = json.loads(_text_chunks(image)["parameters"])
    assert (
        parameters["prompt"] == "a lighthouse" and parameters["seed"] == 3 and parameters["solver"] == "ddim"
    )
    assert summary["output"] == str(image) and summary["steps"] == 2


def test_the_same_settings_give_the_same_bytes(out: Path, tmp_path: Path) -> None:
    for name in ("a.png", "b.png"):
        assert _generate(out, "--output", str(tmp_path / name))[0] == 0
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_a_missing_tokenizer_is_one_clear_error(out: Path, tmp_path: Path) -> None:
    text_encoder = next(p for p in out.iterdir() if (p / "tokenizer").is_dir())
    shutil.rmtree(text_encoder / "tokenizer")
    code, _, stderr = _generate(out, "--output", str(tmp_path / "x.png"))
    assert (
        code == 1
        and stderr.startswith("error: no tokenizer/ beside the text encoder")
        and "Traceback" not in stderr
    )
    assert not (tmp_path / "x.png").exists()


def test_a_folder_without_an_autoencoder_is_one_clear_error(out: Path, tmp_path: Path) -> None:
    for folder in out.iterdir():
        if folder.is_dir() and "LatentDiffusionAutoencoder" in (folder / "config.json").read_text():
            shutil.rmtree(folder)
    code, _, stderr = _generate(out, "--output", str(tmp_path / "x.png"))
    assert code == 1 and "one autoencoder is needed" in stderr and "hint:" in stderr


def test_an_unknown_solver_is_refused_listing_the_known_ones(out: Path) -> None:
    code, _, stderr = _generate(out, "--solver", "heun")
    assert code == 2 and "'heun' is not one of" in stderr and "dpmpp_2m_karras" in stderr


def test_a_size_the_autoencoder_cannot_take_is_refused(out: Path) -> None:
    code, _, stderr = _generate(out, "--width", "63")
    assert code == 1 and "multiples of" in stderr

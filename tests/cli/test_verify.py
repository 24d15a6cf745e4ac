"""`zoo verify`: hashes, reproduction and parity against the manifest, through click and a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

import converters._convert.component
from converters._checkpoints import read_header
from converters._convert.by_name import convert
from zoo.cli import main
from zoo.hub import sha256_file
from zoo.manifest import read_manifest, write_manifest

NAME = "sd15.autoencoder"
ROOT = Path(__file__).resolve().parents[2]


def zoo(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("verify") / "out"
    convert(NAME, out=out, synthetic="tiny")
    return out


@pytest.fixture
def out(converted: Path, tmp_path: Path) -> Path:
    """A private copy of one tiny conversion (every test may break its own)."""
    return Path(shutil.copytree(converted, tmp_path / "out", symlinks=True))


def weights(out: Path) -> Path:
    return out / NAME / "model.safetensors"


def flip_a_byte_of(path: Path, tensor: str) -> None:
    header = read_header(path)
    offset = header.data_start + header.entries[tensor].begin
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def findings(stdout: str) -> list[dict[str, Any]]:
    return json.loads(stdout)["findings"]


def test_hashes_pass_on_a_fresh_conversion(out: Path) -> None:
    code, stdout, stderr = zoo("verify", NAME, "--out", str(out), "--json")
    assert code == 0, stderr
    checked = findings(stdout)
    assert {f["status"] for f in checked} == {"ok"}
    assert {f["subject"] for f in checked} >= {f"{NAME}/model.safetensors", f"{NAME}/config.json"}


def test_a_one_byte_change_fails_hashes_naming_the_file(out: Path) -> None:
    flip_a_byte_of(weights(out), "Encoder.Conv2d.weight")
    code, _, stderr = zoo("verify", NAME, "--out", str(out), "--hashes")
    assert code == 1
    assert f"{NAME}/model.safetensors" in stderr and "sha256" in stderr


def test_reproduce_passes_when_conversion_is_deterministic(out: Path) -> None:
    code, stdout, stderr = zoo("verify", NAME, "--out", str(out), "--reproduce", "--json")
    assert code == 0, stderr
    assert [f["status"] for f in findings(stdout)] == ["ok", "ok"]


def test_reproduce_names_the_tensor_a_one_byte_change_hit(out: Path) -> None:
    tensor = sorted(read_header(weights(out)).entries)[3]
    flip_a_byte_of(weights(out), tensor)
    code, stdout, _ = zoo("verify", NAME, "--out", str(out), "--reproduce", "--json")
    assert code == 1
    failed = [f for f in findings(stdout) if f["fatal"]]
    assert len(failed) == 1 and failed[0]["tensor"] == tensor
    assert failed[0]["subject"] == f"{NAME}/model.safetensors"


def test_reproduce_catches_a_nondeterministic_converter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    metadata = converters._convert.component._metadata  # pyright: ignore[reportPrivateUsage]

    def stamped(traced: Any) -> dict[str, str]:  # a test double: writes the time into the output
        return {**metadata(traced), "converted_at": str(time.time_ns())}

    monkeypatch.setattr(converters._convert.component, "_metadata", stamped)
    convert(NAME, out=tmp_path, synthetic="tiny")
    code, stdout, _ = zoo("verify", NAME, "--out", str(tmp_path), "--reproduce", "--json")
    assert code == 1
    failed = [f for f in findings(stdout) if f["fatal"]]
    assert [f["subject"] for f in failed] == [f"{NAME}/model.safetensors"]
    assert "metadata 'converted_at'" in failed[0]["detail"]


def test_reproduce_refuses_changed_sources(out: Path) -> None:
    source = out / "synthetic-source" / "sd15.autoencoder-tiny" / "vae" / "config.json"
    source.write_text(source.read_text().replace("0.18215", "0.2"))
    code, stdout, _ = zoo("verify", NAME, "--out", str(out), "--reproduce", "--json")
    assert code == 1
    assert "cannot reproduce" in findings(stdout)[0]["detail"]


def test_missing_and_extra_files_are_fatal_only_with_strict(out: Path) -> None:
    (out / NAME / "config.json").unlink()
    (out / NAME / "notes.txt").write_text("hello")
    code, stdout, _ = zoo("verify", NAME, "--out", str(out), "--json")
    assert code == 0
    statuses = {f["subject"]: f["status"] for f in findings(stdout)}
    assert statuses[f"{NAME}/config.json"] == "missing" and statuses[f"{NAME}/notes.txt"] == "extra"
    code, _, stderr = zoo("verify", NAME, "--out", str(out), "--strict")
    assert code == 1 and f"{NAME}/config.json" in stderr and f"{NAME}/notes.txt" in stderr


def test_parity_record_then_check(out: Path) -> None:
    code, stdout, stderr = zoo("verify", NAME, "--out", str(out), "--parity", "--record", "--json")
    assert code == 0, stderr
    assert findings(stdout)[0]["status"] == "recorded"
    parity = read_manifest(out / "manifest.json").entries[NAME]["parity"]
    assert parity["dtype"] == "float32" and parity["max_relative_error"] < 1e-5
    assert set(parity["versions"]) == {"torch", "diffusers", "transformers"}
    code, stdout, stderr = zoo("verify", NAME, "--out", str(out), "--parity", "--json")
    assert code == 0, stderr
    assert findings(stdout)[0]["status"] == "ok" and "recorded" in findings(stdout)[0]["detail"]


def test_parity_catches_wrong_weights_that_the_manifest_vouches_for(out: Path) -> None:
    tensors = load_file(weights(out))
    tensors["Decoder.Conv2d.weight"] += 0.05
    save_file(tensors, weights(out))
    data = read_manifest(out / "manifest.json").data  # a manifest re-recorded over bad weights
    output = data["conversions"][NAME]["outputs"][0]
    output["sha256"], output["size"] = sha256_file(weights(out)), weights(out).stat().st_size
    write_manifest(out / "manifest.json", data)
    code, stdout, _ = zoo("verify", NAME, "--out", str(out), "--hashes", "--parity", "--json")
    assert code == 1
    failed = [f for f in findings(stdout) if f["fatal"]]
    assert [(f["check"], f["subject"]) for f in failed] == [("parity", "output[0]")]


def test_targets_can_be_folders_and_manifest_files(out: Path) -> None:
    for target in (str(out), str(out / NAME), str(out / "manifest.json")):
        code, stdout, stderr = zoo("verify", target, "--json")
        assert code == 0, (target, stderr)
        assert {f["entry"] for f in findings(stdout)} == {NAME}


def test_a_declared_manifest_is_checked_against_out(out: Path) -> None:
    declared = str(ROOT / "manifests" / "sd15.json")
    code, stdout, _ = zoo("verify", declared, "--out", str(out), "--json")
    assert code == 0  # nothing contradicts: real output hashes are unknown, Hub sources are not cached
    tiny = [f for f in findings(stdout) if f["subject"] == f"{NAME}/model.safetensors"]
    assert tiny[0]["status"] == "unknown"
    code, _, _ = zoo("verify", declared, "--out", str(out), "--strict")
    assert code == 1


def test_unknown_name_is_one_line_with_a_hint(out: Path) -> None:
    code, _, stderr = zoo("verify", "sdxl.unet", "--out", str(out))
    assert code == 1 and stderr.startswith("error: no entry 'sdxl.unet'") and "hint:" in stderr
    assert "Traceback" not in stderr


@pytest.mark.slow
def test_end_to_end_in_a_subprocess(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf-home")}
    out = tmp_path / "out"

    def zoo_process(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "zoo.cli", *args]
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)

    done = zoo_process("convert", NAME, "--synthetic", "tiny", "--out", str(out))
    assert done.returncode == 0, done.stderr
    done = zoo_process("verify", NAME, "--out", str(out), "--hashes", "--reproduce", "--parity", "--strict")
    assert done.returncode == 0, done.stderr
    flip_a_byte_of(weights(out), "Decoder.Conv2d.weight")
    done = zoo_process("verify", NAME, "--out", str(out), "--reproduce")
    assert done.returncode == 1 and "Decoder.Conv2d.weight" in done.stderr and "Traceback" not in done.stderr

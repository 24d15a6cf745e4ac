"""The `zoo` command through click's runner and a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from zoo.cli import main


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_help_and_version() -> None:
    code, out, _ = run("--help")
    assert code == 0 and "convert" in out and "trace" in out
    code, out, _ = run("--version")
    assert code == 0 and "zoo" in out


def test_convert_synthetic_json(tmp_path: Path) -> None:
    code, out, err = run("convert", "sd15", "--synthetic", "tiny", "--out", str(tmp_path), "--json")
    assert code == 0, err
    data = json.loads(out)
    names = [c["name"] for c in data["components"]]
    assert names == ["sd15.unet", "sd15.text_encoder", "sd15.autoencoder"]
    for component in data["components"]:
        weights = tmp_path / component["name"] / "model.safetensors"
        assert weights.stat().st_size == component["bytes"] and len(component["sha256"]) == 64


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="names open files through /proc")
def test_a_durable_conversion_fsyncs_every_file_it_writes_and_gives_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shas, fsync = {}, os.fsync
    for durable in (False, True):
        synced: list[str] = []

        def recorded(fd: int, synced: list[str] = synced) -> None:
            synced.append(os.readlink(f"/proc/self/fd/{fd}"))
            fsync(fd)

        monkeypatch.setattr(os, "fsync", recorded)
        flags = ["--durable"] if durable else []
        out = tmp_path / str(durable)
        code, stdout, err = run(
            "convert", "sd15.autoencoder", "--synthetic", "tiny", "--out", str(out), "--json", *flags
        )
        assert code == 0, err
        ours = [name for name in synced if name.startswith(str(out))]
        for written in (".model.safetensors.tmp-", ".config.json.tmp-", ".manifest.json.tmp-"):
            assert any(written in name for name in ours) == durable, (written, ours)
        assert bool(ours) == durable, "without --durable nothing waits for the disk"
        shas[durable] = json.loads(stdout)["components"][0]["sha256"]
    assert shas[True] == shas[False]


def test_unknown_name_is_one_line_with_a_hint() -> None:
    code, _, err = run("convert", "sdxl.nope", "--dry-run")
    assert code == 1
    assert err.startswith("error: unknown conversion 'sdxl.nope'") and "hint: sdxl declares" in err
    assert "Traceback" not in err


def test_trace_full_size_json() -> None:
    code, out, err = run("trace", "sdxl.autoencoder", "--json")
    assert code == 0, err
    data = json.loads(out)["sdxl.autoencoder"]
    assert data["coverage"]["produced_targets"] == data["coverage"]["target_tensors"] == 248


def test_inspect_reports_family_and_hash(tmp_path: Path) -> None:
    code, _, err = run("convert", "sd15.autoencoder", "--synthetic", "tiny", "--out", str(tmp_path))
    assert code == 0, err
    source = (
        tmp_path
        / "synthetic-source"
        / "sd15.autoencoder-tiny"
        / "vae"
        / "diffusion_pytorch_model.safetensors"
    )
    code, out, _ = run("inspect", str(source), "--json", "--shapes", "*conv_in*")
    data = json.loads(out)
    assert code == 0 and "autoencoder (diffusers" in data["kind"] and len(data["sha256"]) == 64
    assert data["shapes"]["encoder.conv_in.weight"][0] == 32


def test_inspect_refuses_a_git_lfs_pointer(tmp_path: Path) -> None:
    pointer = tmp_path / "model.safetensors"
    pointer.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 12\n")
    code, _, err = run("inspect", str(pointer))
    assert code == 1 and "LFS" in err and str(pointer) in err


def test_offline_without_source_fails_fast_naming_both_ways_out(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf")}
    env.pop("HF_HUB_OFFLINE", None)  # no network here: it must not hang on retries either
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "zoo.cli", "convert", "sdxl", "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 1
    assert "--source" in done.stderr and "--synthetic" in done.stderr
    assert time.perf_counter() - started < 15  # no retries against an unreachable Hub
    assert not (tmp_path / "out").exists()


def test_the_command_ends_with_its_status_and_whole_output_in_a_real_process(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "zoo", "convert", "sd15.autoencoder", "--synthetic", "tiny"]
    done = subprocess.run([*command, "--out", str(tmp_path), "--json"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["components"][0]["name"] == "sd15.autoencoder"
    failed = subprocess.run(
        [sys.executable, "-m", "zoo", "convert", "sdxl.nope"], capture_output=True, text=True
    )
    assert failed.returncode == 1 and failed.stderr.startswith("error:") and "Traceback" not in failed.stderr


def _leaving(code: str) -> subprocess.CompletedProcess[str]:
    prelude = "import atexit, threading, time\nfrom zoo.__main__ import leave\n"
    return subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=60)


def test_leaving_runs_the_exit_handlers_flushes_and_keeps_the_status() -> None:
    done = _leaving("atexit.register(print, 'handlers ran')\nprint('output', end=' ')\nleave(3)")
    assert (done.returncode, done.stdout, done.stderr) == (3, "output handlers ran\n", "")


def test_leaving_waits_for_a_running_worker_thread_as_python_does() -> None:
    worker = "threading.Thread(target=lambda: (time.sleep(0.3), print('worker finished'))).start()\n"
    done = _leaving(worker + "leave(0)")
    assert (done.returncode, done.stdout) == (0, "worker finished\n")


@pytest.mark.parametrize("args", [["list"], ["list", "--json"]])
def test_list(args: list[str]) -> None:
    code, out, _ = run(*args)
    assert code == 0 and "sdxl.unet" in out and "sd15.autoencoder" in out

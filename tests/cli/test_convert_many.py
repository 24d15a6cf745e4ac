"""`zoo convert` of several names, or `--all`, with `--jobs`: worker processes within a memory budget."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from converters import registry
from converters._convert import jobs
from converters._convert.jobs import convert_many
from zoo.cli import main
from zoo.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]


def zoo(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_the_whole_zoo_converts_in_two_jobs_and_verifies(tmp_path: Path) -> None:
    """`zoo convert --all --jobs 2 --synthetic tiny`, as a user runs it: every declared conversion."""
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "zoo", "convert", "--all", "--jobs", "2", "--synthetic", "tiny"]
    converted = subprocess.run(
        [*command, "--out", str(out), "--json"], env=env, capture_output=True, text=True, timeout=900
    )
    assert converted.returncode == 0, converted.stderr[-3000:]
    runs = json.loads(converted.stdout)["runs"]
    assert sorted(runs) == sorted(registry.all_conversions())
    verified = subprocess.run(
        [sys.executable, "-m", "zoo", "verify", "--out", str(out), "--hashes", "--strict", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert verified.returncode == 0, verified.stdout[-3000:]
    # Each conversion's synthetic source is its own: the manifest proves every one of them.
    assert sorted(p.name for p in (out / "synthetic-source").iterdir()) == sorted(f"{n}-tiny" for n in runs)


def test_a_failing_job_does_not_stop_the_others(tmp_path: Path) -> None:
    # `sam` alone is a family of alternatives, which --synthetic cannot pick from: that job fails.
    code, stdout, stderr = zoo(
        "convert", "sam", "sd15.autoencoder", "--synthetic", "tiny", "--out", str(tmp_path), "--jobs", "1"
    )
    assert code == 1
    assert "sd15.autoencoder" in stdout and (tmp_path / "sd15.autoencoder" / "model.safetensors").is_file()
    assert "error: sam: " in stderr and "alternatives" in stderr and "1 of 2 failed" in stderr


def test_names_must_not_overlap_and_sources_go_with_one_name(tmp_path: Path) -> None:
    code, _, stderr = zoo("convert", "sd15", "sd15.unet", "--synthetic", "tiny", "--out", str(tmp_path))
    assert code == 1 and "sd15.unet is named twice (by sd15 and by sd15.unet)" in stderr
    code, _, stderr = zoo("convert", "sd15.unet", "sdxl.unet", "--source", str(tmp_path))
    assert code == 2 and "--source and --revision go with one NAME" in stderr
    code, _, stderr = zoo("convert", "sd15", "--all")
    assert code == 2 and "not both" in stderr
    code, _, stderr = zoo("convert")
    assert code == 2 and "--all" in stderr


def test_jobs_start_only_while_their_memory_fits_the_budget() -> None:
    needs = {"a": 4, "b": 4, "c": 10}
    assert jobs._fits(needs, [], "c", budget=5)  # one job always runs, whatever it needs
    assert jobs._fits(needs, ["a"], "b", budget=8)
    assert not jobs._fits(needs, ["a"], "b", budget=7)
    assert not jobs._fits(needs, ["a"], "c", budget=13)


def test_a_full_size_synthetic_source_runs_alone() -> None:
    assert jobs._memory_need({"synthetic": "full"}, budget=10**10) == 10**10
    assert jobs._memory_need({"synthetic": "tiny"}, budget=10**10) == jobs.STREAMING_PEAK_BYTES
    assert jobs.available_memory() > 0


def test_a_name_given_twice_is_refused_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="named twice"):
        convert_many(["sd15.unet", "sd15.unet"], jobs=2, out=tmp_path, synthetic="tiny")
    assert not tmp_path.joinpath("synthetic-source").exists()

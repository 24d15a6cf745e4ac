"""`zoo list`: every declared conversion, its pinned sources, and whether its outputs are here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from converters import registry
from converters._convert.by_name import convert
from zoo.cli import main

NAME = "sd15.autoencoder"


def listed(out: Path) -> dict[str, dict[str, Any]]:
    result = CliRunner().invoke(main, ["list", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.stderr
    return {item["name"]: item for item in json.loads(result.stdout)["include"]}


def test_every_declared_conversion_with_its_pinned_sources(tmp_path: Path) -> None:
    items = listed(tmp_path)
    assert set(items) == set(registry.all_conversions())  # what `zoo convert NAME` converts alone
    source = items[NAME]["sources"][0]
    assert source["file"] == "vae/diffusion_pytorch_model.safetensors" and len(source["revision"]) == 40
    assert len(source["sha256"]) == 64 and source["license"] == "creativeml-openrail-m"
    encoders = items["sdxl.text_encoder"]["sources"]
    assert [s["revision"] for s in encoders] == [None, None] and all(s["unknown"] for s in encoders)
    assert all(item["outputs"]["status"] == "absent" for item in items.values())


def test_outputs_present_verified_and_tampered(tmp_path: Path) -> None:
    convert(NAME, out=tmp_path, synthetic="tiny")
    outputs = listed(tmp_path)[NAME]["outputs"]
    assert outputs["present"] is True and outputs["verified"] is True and outputs["status"] == "verified"
    weights = tmp_path / NAME / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    outputs = listed(tmp_path)[NAME]["outputs"]
    assert outputs["verified"] is False and outputs["status"] == f"MISMATCH: {NAME}/model.safetensors"
    (tmp_path / "manifest.json").unlink()
    assert listed(tmp_path)[NAME]["outputs"]["status"] == "present, not in a manifest"


def test_table_shows_revisions_and_output_status(tmp_path: Path) -> None:
    convert(NAME, out=tmp_path, synthetic="tiny")
    result = CliRunner().invoke(main, ["list", "--out", str(tmp_path)])
    assert result.exit_code == 0
    line = next(line for line in result.stdout.splitlines() if line.startswith(NAME))
    assert "f03de327dd89" in line and "verified" in line
    unet = next(line for line in result.stdout.splitlines() if line.startswith("sdxl.text_encoder"))
    assert "unpinned" in unet and "absent" in unet


def test_the_table_also_lists_the_files_that_convert_against_a_base(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["list", "--out", str(tmp_path)])
    assert result.exit_code == 0
    based = [f for family in registry.families().values() for f in family.based_files]
    assert based and all(f.name in result.stdout for f in based)
    assert all(f"--base OUT/{f.base}" in result.stdout for f in based)

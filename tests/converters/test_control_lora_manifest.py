"""A Control-LoRA run recorded in `OUT/manifest.json`: `zoo verify --hashes --reproduce` checks and redoes
it, an edited output fails both, `zoo list` shows the declared Stability files, `zoo inspect` names the
base a file fits, and `zoo publish --dry-run` stages it under the declared file's licence."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from foundationals.control_pairs import TINY_UNETS, converted, randomize  # pyright: ignore[reportMissingImports]
from safetensors.torch import save_file
from test_control_lora import _base, setup  # pyright: ignore[reportMissingImports]  # noqa: F401

from converters._detect import detect_checkpoint
from converters._reports.catalog import describe_conversions
from converters.control_lora import convert_control_lora
from converters.control_lora.files import DECLARED
from zoo.cli import main
from zoo.errors import ConfigError
from zoo.hub import sha256_file
from zoo.manifest import read_manifest
from zoo.model_card import prepare_publication

DECLARED_NAME = "control-lora-canny-rank128.safetensors"  # a declared file's name (its rank here is 2)
ENTRY = "control_lora/control-lora-canny-rank128"


def zoo(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def recorded(setup: dict[str, Any], tmp_path: Path) -> Path:  # noqa: F811
    """OUT with one recorded Control-LoRA run, of a file under a declared name."""
    file = tmp_path / "files" / DECLARED_NAME
    file.parent.mkdir()
    save_file(setup["file"], file)
    convert_control_lora(file, _base(setup), tmp_path / "out")
    return tmp_path / "out"


def _verify(out: Path, *checks: str) -> dict[str, Any]:
    code, stdout, _ = zoo("verify", str(out), *checks, "--json")
    report = json.loads(stdout)
    assert (code == 0) == report["ok"]
    return report


def test_a_run_is_recorded_with_its_file_base_and_outputs(setup: dict[str, Any], recorded: Path) -> None:  # noqa: F811
    entry = read_manifest(recorded / "manifest.json").entries[ENTRY]  # validated on read
    source, weights, config = entry["sources"][0], *entry["sources"][1:]
    assert entry["type"] == "control_lora" and source["role"] == "control_lora"
    assert source["sha256"] == sha256_file(recorded.parent / "files" / DECLARED_NAME)
    assert source["repo"] == "stabilityai/control-lora" and source["file"].endswith(DECLARED_NAME)
    assert weights["role"] == "base_weights" and weights["sha256"] == sha256_file(
        _base(setup) / "model.safetensors"
    )
    assert config["role"] == "base_config"
    folder = recorded / ENTRY
    assert [o["file"] for o in entry["outputs"]] == [f"{ENTRY}/model.safetensors", f"{ENTRY}/config.json"]
    assert entry["outputs"][0]["sha256"] == sha256_file(folder / "model.safetensors")
    assert entry["license"] == "other" and entry["license_name"] and entry["license_link"]
    assert entry["target"]["model_class"].endswith("ControlNet") and entry["parity"] is None


def test_hashes_and_reproduce_pass(recorded: Path) -> None:
    report = _verify(recorded, "--hashes", "--reproduce", "--parity")
    statuses = {(f["check"], f["subject"]): f["status"] for f in report["findings"]}
    assert report["ok"], report
    assert statuses[("reproduce", f"{ENTRY}/model.safetensors")] == "ok"
    assert statuses[("reproduce", f"{ENTRY}/config.json")] == "ok"
    assert statuses[("parity", f"{ENTRY}/model.safetensors")] == "not applicable"
    assert sum(f["check"] == "hashes" and f["status"] == "ok" for f in report["findings"]) == 5


def test_the_output_bytes_are_deterministic(setup: dict[str, Any], tmp_path: Path) -> None:  # noqa: F811
    file = tmp_path / DECLARED_NAME
    save_file(setup["file"], file)
    runs = [convert_control_lora(file, _base(setup), tmp_path / f"out{index}") for index in range(2)]
    assert runs[0].sha256 == runs[1].sha256
    configs = [(run.folder / "config.json").read_bytes() for run in runs]
    assert configs[0] == configs[1]


def test_an_edited_output_fails_hashes_and_reproduce(recorded: Path) -> None:
    weights = recorded / ENTRY / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    for check in ("--hashes", "--reproduce"):
        report = _verify(recorded, check)
        failed = [f for f in report["findings"] if f["fatal"]]
        assert not report["ok"] and failed[0]["subject"] == f"{ENTRY}/model.safetensors", check


def test_a_changed_base_blocks_reproduce(setup: dict[str, Any], recorded: Path) -> None:  # noqa: F811
    entry = read_manifest(recorded / "manifest.json").entries[ENTRY]
    entry["sources"][1]["sha256"] = "0" * 64  # as if the base's weights had changed since
    manifest = json.loads((recorded / "manifest.json").read_text())
    manifest["conversions"][ENTRY] = entry
    (recorded / "manifest.json").write_text(json.dumps(manifest))
    report = _verify(recorded, "--reproduce")
    assert not report["ok"] and "cannot reproduce" in report["findings"][0]["detail"]


def test_a_base_of_another_shape_is_refused_with_nothing_written(
    setup: dict[str, Any],  # noqa: F811
    tmp_path: Path,
) -> None:
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel

    torch.manual_seed(0)
    other = randomize(UNet2DConditionModel(**{**TINY_UNETS["sdxl"], "cross_attention_dim": 128}), 0)
    converted(other, "sdxl.unet", "unet", tmp_path / "other")
    file = tmp_path / DECLARED_NAME
    save_file(setup["file"], file)
    with pytest.raises(ConfigError, match="does not fit the base"):
        convert_control_lora(file, tmp_path / "other" / "out" / "sdxl.unet", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_zoo_list_shows_the_declared_files(tmp_path: Path) -> None:
    # `zoo list --json` is the CI matrix of what converts alone; the catalog behind the table has these.
    rows = {row["name"]: row for row in describe_conversions(tmp_path) if row["family"] == "control_lora"}
    kinds = ("canny", "depth", "recolor", "sketch")
    assert len(rows) == 8 and {d.name for d in DECLARED} == set(rows)
    assert all(any(f"{kind}-rank{rank}" in name for name in rows) for kind in kinds for rank in (128, 256))
    for row in rows.values():
        [source] = row["sources"]
        assert row["base"] == "sdxl.unet" and source["repo"] == "stabilityai/control-lora"
        assert source["revision"] is None and source["sha256"] is None and "not pinned" in source["unknown"]
    assert "control_lora/control-lora-canny-rank256" in zoo("list", "--out", str(tmp_path))[1]


def test_zoo_list_finds_a_recorded_run(recorded: Path) -> None:
    [row] = [row for row in describe_conversions(recorded) if row["name"] == ENTRY]
    assert row["outputs"]["status"] == "verified"
    code, stdout, _ = zoo("list", "--out", str(recorded))
    assert code == 0 and any(line.startswith(ENTRY) and "verified" in line for line in stdout.splitlines())


def test_zoo_inspect_names_the_base_and_the_declared_file(recorded: Path) -> None:
    code, stdout, stderr = zoo("inspect", str(recorded.parent / "files" / DECLARED_NAME), "--json")
    report = json.loads(stdout)
    assert code == 0, stderr
    assert report["family"] == "control_lora" and "base is the SDXL UNet (sdxl.unet)" in report["kind"]
    assert report["declared"].startswith("stabilityai/control-lora/control-LoRAs-rank128/")


@pytest.mark.parametrize(
    ("rank", "width", "told"), [(128, 2048, "rank 128 for SDXL"), (4, 768, "fit no SDXL")]
)
def test_the_rank_and_the_base_come_from_the_shapes(rank: int, width: int, told: str) -> None:
    shapes = {
        "lora_controlnet": (0,),
        "input_blocks.4.1.transformer_blocks.0.attn2.to_k.up": (640, rank),
        "input_blocks.4.1.transformer_blocks.0.attn2.to_k.down": (rank, width),
    }
    found = detect_checkpoint(shapes)
    assert found is not None and found.family == "control_lora" and told in found.description


def test_publish_dry_run_stages_the_entry_under_the_declared_licence(recorded: Path) -> None:
    args = ("publish", ENTRY, "--repo", "me/canny", "--out", str(recorded), "--dry-run", "--json")
    code, stdout, stderr = zoo(*args)
    assert code == 0, stderr
    staged = {op["path_in_repo"] for op in json.loads(stdout)["plan"]["operations"]}
    assert staged == {"model.safetensors", "config.json", "manifest.json", "README.md"}
    plan = prepare_publication(ENTRY, "me/canny", recorded, dry_run=True)
    [card] = [f.content for f in plan.files if f.path_in_repo == "README.md"]
    assert isinstance(card, bytes)
    text = card.decode()
    assert "license: other" in text and "license_name: stabilityai-community-license" in text
    assert "base_model: stabilityai/control-lora" in text
    assert f"zoo convert control-lora {DECLARED_NAME} --base out/sdxl.unet --out out" in text


def test_publish_refuses_a_file_of_unknown_licence(setup: dict[str, Any], tmp_path: Path) -> None:  # noqa: F811
    file = tmp_path / "my-canny.safetensors"
    save_file(setup["file"], file)
    convert_control_lora(file, _base(setup), tmp_path / "out")
    entry = "control_lora/my-canny"
    code, _, stderr = zoo("publish", entry, "--repo", "me/canny", "--out", str(tmp_path / "out"), "--dry-run")
    assert code != 0 and "licence is unknown" in stderr and "under its own name" in stderr

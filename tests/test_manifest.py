"""Manifests: the schema, the repository's declared manifests, and what `zoo convert` records."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from converters import registry
from converters._convert.by_name import convert
from zoo.configs import config_digest, config_from_dict, import_model_class
from zoo.hub import COMMIT, SHA256, sha256_file
from zoo.loading import build_from_config
from zoo.manifest import read_manifest, validate_manifest, write_manifest

ROOT = Path(__file__).resolve().parent.parent
REPO_MANIFESTS = sorted((ROOT / "manifests").glob("*.json"))
HASH_KEYS = ("sha256", "config_sha256", "keymap_sha256", "output_sha256")


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _walk(node: Any, at: str = "") -> Iterator[tuple[str, str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield at, key, value
            yield from _walk(value, f"{at}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{at}[{index}]")


def _entries(paths: list[Path]) -> list[tuple[str, dict[str, Any]]]:
    return [(name, entry) for path in paths for name, entry in _load(path)["conversions"].items()]


# -- the repository's manifests ---------------------------------------------------------------------


def test_there_is_one_manifest_per_declared_family() -> None:
    assert [path.stem for path in REPO_MANIFESTS] == sorted(
        name for name, family in registry.families().items() if family.declared
    )
    names = {name for name, _ in _entries(REPO_MANIFESTS)}
    assert names == set(registry.all_conversions())


@pytest.mark.parametrize("path", REPO_MANIFESTS, ids=lambda p: p.name)
def test_repo_manifest_follows_the_schema(path: Path) -> None:
    data = _load(path)
    assert validate_manifest(data) == []
    assert data["kind"] == "declared"
    for at, key, value in _walk(data):
        if at.endswith(".unknown"):
            continue  # reasons, keyed by the field they explain
        if key == "revision" and value is not None:
            assert COMMIT.match(value), f"{at}.{key}: {value!r} is not 40 hex"
        if key in HASH_KEYS and value is not None:
            assert SHA256.match(value), f"{at}.{key}: {value!r} is not 64 hex"


@pytest.mark.parametrize(
    ("name", "entry"), _entries(REPO_MANIFESTS), ids=lambda v: v if isinstance(v, str) else ""
)
def test_parameter_counts_match_our_model_built_on_meta(name: str, entry: dict[str, Any]) -> None:
    target = entry["target"]
    model = build_from_config(target, device="meta")
    state = model.state_dict()
    weights = next(output for output in entry["outputs"] if output["role"] == "weights")
    assert weights["num_tensors"] == len(state)
    assert weights["num_params"] == sum(math.prod(tensor.shape) for tensor in state.values())
    config = config_from_dict(import_model_class(target["config_class"]), target["config"])
    assert config_digest(config) == target["config_sha256"]


@pytest.mark.parametrize(
    ("name", "entry"), _entries(REPO_MANIFESTS), ids=lambda v: v if isinstance(v, str) else ""
)
def test_declared_sources_carry_the_pinned_facts(name: str, entry: dict[str, Any]) -> None:
    conversion = registry.all_conversions()[name]
    pins = [part.pinned for part in conversion.parts if part.pinned is not None]
    declared = {(pin.repo, pin.filename, pin.revision, pin.sha256) for pin in pins}
    recorded = {
        (s["repo"], s["file"], s["revision"], s["sha256"]) for s in entry["sources"] if s["role"] == "weights"
    }
    assert recorded == declared
    assert entry["license"] == conversion.license


def test_sdxl_text_encoders_say_plainly_that_their_pins_are_unknown() -> None:
    entry = _load(ROOT / "manifests" / "sdxl.json")["conversions"]["sdxl.text_encoder"]
    weights = [s for s in entry["sources"] if s["role"] == "weights"]
    assert {s["file"] for s in weights} == {
        "text_encoder/model.safetensors",
        "text_encoder_2/model.safetensors",
    }
    for source in weights:
        assert source["revision"] is None and source["sha256"] is None
        assert source["unknown"]["revision"] and source["unknown"]["sha256"]


def test_real_outputs_are_unknown_with_a_reason_until_a_real_run() -> None:
    for _name, entry in _entries(REPO_MANIFESTS):
        for output in entry["outputs"]:
            if output["sha256"] is None:
                assert "Hub access" in output["unknown"]["sha256"]
        assert entry["parity"] is not None or entry["unknown"]["parity"]


@pytest.mark.slow
def test_repo_manifests_are_what_the_declarations_generate(traced_key_maps: Path) -> None:
    """Full-size traces the key-map tests made this session are read back, not made again."""
    environment = {key: value for key, value in os.environ.items() if key != "ZOO_NO_CACHE"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "ci" / "write_manifests.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**environment, "ZOO_CACHE": str(traced_key_maps)},
    )
    assert done.returncode == 0, done.stderr


# -- the schema -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def valid() -> dict[str, Any]:
    return _load(ROOT / "manifests" / "sd15.json")


def _problems(data: dict[str, Any], change: Any) -> list[str]:
    broken = copy.deepcopy(data)
    change(broken["conversions"]["sd15.autoencoder"])
    return validate_manifest(broken)


def _set(obj: dict[str, Any], **values: Any) -> None:
    obj.update(values)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda e: _set(e["sources"][0], revision="main"), "is not 40 lowercase hex digits"),
        (
            lambda e: _set(e["sources"][0], revision="F03DE327DD89B501A01DA37FC5240CF4FDBA85A1"),
            "40 lowercase hex",
        ),
        (lambda e: _set(e["sources"][0], sha256="abc"), "is not 64 lowercase hex digits"),
        (lambda e: _set(e["sources"][0], sha256=None), "sha256: null without a reason"),
        (
            lambda e: e["sources"][0]["unknown"].update(revision="stale"),
            "unknown.revision: a reason for a value",
        ),
        (lambda e: e["outputs"][0]["unknown"].update(sha256=""), "the reason must be a non-empty string"),
        (lambda e: _set(e["outputs"][0], num_params=True), "num_params: expected int"),
        (lambda e: _set(e["outputs"][0], file="../escape.safetensors"), "must be a relative path"),
        (lambda e: _set(e, surprise=1), "surprise: not in the schema"),
        (lambda e: e.pop("keymap_sha256"), "keymap_sha256: missing"),
        (lambda e: _set(e, name="sd15.other"), "differs from its key"),
        (lambda e: e["target"]["config"].update(latent_channels=8), "not the digest of target.config"),
        (lambda e: _set(e["sources"][0], kind="local"), "sources[0]"),
        (lambda e: _set(e, outputs=[e["outputs"][1]]), "exactly one output with role 'weights'"),
    ],
)
def test_schema_violations_are_named(valid: dict[str, Any], change: Any, expected: str) -> None:
    problems = _problems(valid, change)
    assert any(expected in problem for problem in problems), problems


def test_parity_needs_its_versions(valid: dict[str, Any]) -> None:
    def add_parity(entry: dict[str, Any]) -> None:
        entry["parity"] = {
            "max_relative_error": 1e-7,
            "relative_errors": [1e-7],
            "max_abs_errors": [1e-6],
            "device": "cpu",
            "dtype": "float32",
            "versions": {"torch": torch.__version__},
            "zoo_version": "0.1.0",
            "output_sha256": "0" * 64,
        }
        entry["unknown"].pop("parity")

    assert any("versions: missing diffusers, transformers" in p for p in _problems(valid, add_parity))


def test_an_invalid_manifest_is_never_written(valid: dict[str, Any], tmp_path: Path) -> None:
    broken = copy.deepcopy(valid)
    broken["conversions"]["sd15.autoencoder"]["sources"][0]["revision"] = "main"
    with pytest.raises(Exception, match="refusing to write an invalid manifest"):
        write_manifest(tmp_path / "manifest.json", broken)
    assert not (tmp_path / "manifest.json").exists()


# -- what `zoo convert` records ---------------------------------------------------------------------


@pytest.fixture
def out(tmp_path: Path) -> Path:
    convert("sd15.autoencoder", out=tmp_path / "out", synthetic="tiny")
    return tmp_path / "out"


def test_convert_writes_a_valid_manifest_of_what_it_read_and_wrote(out: Path) -> None:
    manifest = read_manifest(out / "manifest.json")
    assert manifest.kind == "output" and list(manifest.entries) == ["sd15.autoencoder"]
    entry = manifest.entries["sd15.autoencoder"]
    for output in entry["outputs"]:
        path = out / output["file"]
        assert sha256_file(path) == output["sha256"] and path.stat().st_size == output["size"]
    for source in entry["sources"]:
        assert source["kind"] == "local" and not Path(source["path"]).is_absolute()
        assert sha256_file(out / source["path"]) == source["sha256"]
        assert source["license"] is None and "licence is not known" in source["unknown"]["license"]
    assert entry["convert"] == {
        "source_kind": "local",
        "source": "synthetic-source/sd15.autoencoder-tiny",
        "dtype": "keep",
    }
    assert (
        entry["parity"] is None
        and "zoo verify sd15.autoencoder --parity --record" in entry["unknown"]["parity"]
    )


def test_output_manifest_parameter_counts_match_the_model_on_meta(out: Path) -> None:
    entry = read_manifest(out / "manifest.json").entries["sd15.autoencoder"]
    state = build_from_config(entry["target"], device="meta").state_dict()
    weights = entry["outputs"][0]
    assert weights["num_params"] == sum(math.prod(t.shape) for t in state.values())


def test_sha256_is_streamed_and_exact_across_chunks(tmp_path: Path) -> None:
    path = tmp_path / "big"
    data = bytes(range(256)) * (3 * 4096 + 1)  # ~3 MiB: several 1 MiB chunks and a partial one
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_a_dry_run_records_nothing(tmp_path: Path) -> None:
    convert("sd15.autoencoder", out=tmp_path, synthetic="tiny", dry_run=True)
    assert not (tmp_path / "manifest.json").exists()


def test_entries_accumulate_and_parity_survives_identical_bytes(out: Path) -> None:
    path = out / "manifest.json"
    data = read_manifest(path).data
    entry = data["conversions"]["sd15.autoencoder"]
    entry["parity"] = {
        "max_relative_error": 1e-7,
        "relative_errors": [1e-7],
        "max_abs_errors": [1e-6],
        "device": "cpu",
        "dtype": "float32",
        "versions": {"torch": "t", "diffusers": "d", "transformers": "t"},
        "zoo_version": "0.1.0",
        "output_sha256": entry["outputs"][0]["sha256"],
    }
    entry["unknown"].pop("parity")
    write_manifest(path, data)
    source = out / "synthetic-source" / "sd15.autoencoder-tiny"
    convert("sd15.autoencoder", out=out, source=str(source))  # same bytes: the measurement still holds
    assert read_manifest(path).entries["sd15.autoencoder"]["parity"]["max_relative_error"] == 1e-7
    convert("sd15.autoencoder", out=out, source=str(source), dtype=torch.float16)  # new bytes: it does not
    entries = read_manifest(path).entries
    assert entries["sd15.autoencoder"]["parity"] is None
    assert entries["sd15.autoencoder"]["convert"]["dtype"] == "float16"
    convert("sd15.text_encoder", out=out, synthetic="tiny")
    assert sorted(read_manifest(path).entries) == ["sd15.autoencoder", "sd15.text_encoder"]


# -- LoRA entries (`"type": "lora"`) ----------------------------------------------------------------

LORA = "lora/style"


@pytest.fixture
def lora_manifest() -> dict[str, Any]:
    """An output manifest holding one LoRA entry as `convert_lora` records it (built by hand: no run)."""
    source = {
        "kind": "local",
        "role": "lora",
        "path": "../style.safetensors",
        "sha256": "a" * 64,
        "size": 1000,
        "license": None,
        "format": "kohya",
        "ranks": [4],
        "alpha": "an alpha tensor in every entry: factor alpha / rank; folded into lora_up with the scale",
        "unknown": {"license": "a local file: its licence is not known"},
    }
    entry = {
        "type": "lora",
        "name": LORA,
        "description": "kohya LoRA style.safetensors (rank 4) on sdxl",
        "license": None,
        "sources": [source],
        "base": {
            "kind": "family",
            "source": "sdxl",
            "family": "sdxl",
            "models": [
                {
                    "component": "unet",
                    "conversion": "sdxl.unet",
                    "config_sha256": "b" * 64,
                    "keymap_sha256": "c" * 64,
                }
            ],
            "unknown": {},
        },
        "scale": 0.5,
        "outputs": [
            {
                "file": "style.safetensors",
                "role": "weights",
                "sha256": "d" * 64,
                "size": 900,
                "dtype": "float32",
                "num_tensors": 2,
                "num_params": 100,
                "unknown": {},
            }
        ],
        "convert": {
            "source": "../style.safetensors",
            "base": "sdxl",
            "scale": 0.5,
            "dtype": "keep",
            "unknown": {},
        },
        "parity": None,
        "zoo_version": "0.1.0",
        "unknown": {
            "license": "source ../style.safetensors: a local file",
            "parity": "LoRA parity: the test suite",
        },
    }
    return {"manifest_version": 1, "kind": "output", "zoo_version": "0.1.0", "conversions": {LORA: entry}}


def test_a_lora_entry_follows_the_schema_beside_model_entries(
    lora_manifest: dict[str, Any], valid: dict[str, Any]
) -> None:
    assert validate_manifest(lora_manifest) == []
    mixed = copy.deepcopy(lora_manifest)
    model = copy.deepcopy(valid["conversions"]["sd15.autoencoder"])
    mixed["conversions"]["sd15.autoencoder"] = model
    assert validate_manifest(mixed) == []  # an entry without `type` is a model conversion
    model["type"] = "conversion"
    assert validate_manifest(mixed) == []  # ... and may say so


def _lora_problems(data: dict[str, Any], change: Any) -> list[str]:
    broken = copy.deepcopy(data)
    change(broken["conversions"][LORA])
    return validate_manifest(broken)


def _rename(entry: dict[str, Any], name: str) -> None:
    entry["name"] = name


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda e: _set(e, type="adapter"), "'adapter' is not one of conversion, lora"),
        (lambda e: _set(e["outputs"][0], sha256="abc"), "outputs[0].sha256: 'abc' is not 64 lowercase hex"),
        (lambda e: _set(e["sources"][0], sha256="A" * 64), "sources[0].sha256"),
        (lambda e: _set(e["base"]["models"][0], keymap_sha256="x"), "keymap_sha256: 'x' is not 64"),
        (lambda e: e["base"]["models"][0].pop("config_sha256"), "models[0].config_sha256: missing"),
        (lambda e: e["unknown"].pop("parity"), "parity: null without a reason"),
        (lambda e: e["sources"][0]["unknown"].pop("license"), "sources[0].license: null without a reason"),
        (lambda e: _set(e, parity={"max_relative_error": 0.0}), "must be null for a LoRA"),
        (lambda e: _set(e["sources"][0], ranks=[]), "ranks: a non-empty list"),
        (lambda e: _set(e["sources"][0], role="weights"), "exactly one source with role 'lora'"),
        (lambda e: _set(e["convert"], scale=1.0), "convert.scale: 1.0 is not the entry's scale 0.5"),
        (lambda e: _set(e["convert"], dtype="float16"), "'float16' is not one of keep"),
        (lambda e: _set(e["convert"], base="sd15"), "convert.base: not base.source"),
        (lambda e: _set(e["base"], kind="memory"), "null exactly when the base was a model in memory"),
        (lambda e: _set(e, outputs=[*e["outputs"], e["outputs"][0]]), "exactly one output"),
        (lambda e: _set(e["outputs"][0], file="/abs/style.safetensors"), "must be a relative path"),
        (lambda e: e.pop("base"), "base: missing"),
        (lambda e: _set(e, target={}), "target: not in the schema"),
        (lambda e: _rename(e, "lora/other"), "differs from its key"),
    ],
)
def test_lora_schema_violations_are_named(lora_manifest: dict[str, Any], change: Any, expected: str) -> None:
    problems = _lora_problems(lora_manifest, change)
    assert any(expected in problem for problem in problems), problems


def test_lora_entries_are_named_lora_slash_and_live_in_output_manifests(
    lora_manifest: dict[str, Any],
) -> None:
    renamed = copy.deepcopy(lora_manifest)
    entry = renamed["conversions"].pop(LORA)
    entry["name"] = "sdxl.style"
    renamed["conversions"]["sdxl.style"] = entry
    assert any("starts with 'lora/'" in p for p in validate_manifest(renamed))
    declared = {**copy.deepcopy(lora_manifest), "kind": "declared"}
    assert any("holds model conversions only" in p for p in validate_manifest(declared))

"""zoo.hub: pinned downloads through a local HF cache built in the real layout, verified by sha256."""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hf_cache import add_to_cache
from huggingface_hub import constants

import zoo.hub
from converters import sd15
from converters._convert.by_name import convert
from converters._convert.synthetic import write_synthetic_pipeline
from converters.declaration import PinnedFile
from zoo.errors import HashMismatchError, HubError
from zoo.hub import cached_file_origin, download_file, download_pinned, download_pipeline_parts, sha256_file
from zoo.manifest import read_manifest

REPO = "org/model"
REV_A = "a" * 40
REV_B = "b" * 40


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty HF cache under a temporary HF_HOME, offline."""
    home = tmp_path / "hf-home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads its environment once, at import: point the imported constants there too.
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return home / "hub"


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def flip_a_byte(path: Path, offset: int = -1) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_correct_hash_succeeds(cache: Path) -> None:
    content = b"weights" * 1000
    add_to_cache(cache, REPO, REV_A, {"unet/model.safetensors": content})
    path = download_file(REPO, "unet/model.safetensors", REV_A, sha256=sha(content), size=len(content))
    assert path.read_bytes() == content
    assert cached_file_origin(path) is not None and cached_file_origin(path).revision == REV_A  # pyright: ignore[reportOptionalMemberAccess]


def test_one_flipped_byte_fails_naming_the_file_and_both_hashes(cache: Path) -> None:
    content = b"weights" * 1000
    snapshot = add_to_cache(cache, REPO, REV_A, {"unet/model.safetensors": content})
    flip_a_byte(snapshot / "unet" / "model.safetensors")
    flipped = sha256_file(snapshot / "unet" / "model.safetensors")
    with pytest.raises(HashMismatchError) as raised:
        download_file(REPO, "unet/model.safetensors", REV_A, sha256=sha(content))
    message = str(raised.value)
    assert "unet/model.safetensors" in message and REPO in message
    assert sha(content) in message and flipped in message


def test_a_moved_main_ref_does_not_change_a_pinned_revision(cache: Path) -> None:
    old, new = b"old weights", b"new weights"
    add_to_cache(cache, REPO, REV_A, {"model.safetensors": old}, main=True)
    assert download_file(REPO, "model.safetensors", None).read_bytes() == old
    add_to_cache(cache, REPO, REV_B, {"model.safetensors": new}, main=True)  # main moves on
    pinned = download_file(REPO, "model.safetensors", REV_A, sha256=sha(old))
    assert pinned.read_bytes() == old and REV_A in pinned.parts
    assert download_file(REPO, "model.safetensors", None).read_bytes() == new


def test_a_pin_without_revision_is_refused_rather_than_read_at_main(cache: Path) -> None:
    unpinned = PinnedFile(sd15.HUB_REPO, "vae/diffusion_pytorch_model.safetensors", None, None)
    with pytest.raises(HubError, match="no pinned revision"):
        download_pinned(unpinned)


def test_pipeline_parts_are_verified_against_pins_before_use(cache: Path) -> None:
    weights, config = b"\x00" * 4096, json.dumps({"_class_name": "AutoencoderKL"}).encode()
    files = {"vae/config.json": config, "vae/diffusion_pytorch_model.safetensors": weights}
    snapshot = add_to_cache(cache, REPO, REV_A, files, main=True)
    pin = PinnedFile(REPO, "vae/diffusion_pytorch_model.safetensors", REV_A, sha(weights))
    root, commit = download_pipeline_parts(REPO, ["vae"], REV_A, pins=[pin])
    assert (root, commit) == (snapshot, REV_A)
    assert (root / "vae" / "config.json").read_bytes() == config
    flip_a_byte(snapshot / "vae" / "diffusion_pytorch_model.safetensors", 0)
    with pytest.raises(HashMismatchError, match=re.escape("vae/diffusion_pytorch_model.safetensors")):
        download_pipeline_parts(REPO, ["vae"], REV_A, pins=[pin])
    # the same files at main are not covered by a pin for another revision: no claim, no check
    download_pipeline_parts(REPO, ["vae"], None, pins=[PinnedFile(REPO, pin.filename, REV_B, pin.sha256)])


def test_top_level_component_repos_and_sharded_weights(cache: Path) -> None:
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    files = {
        "config.json": b"{}",
        "model.safetensors.index.json": json.dumps(index).encode(),
        "model-00001-of-00002.safetensors": b"1",
        "model-00002-of-00002.safetensors": b"2",
    }
    snapshot = add_to_cache(cache, REPO, REV_A, files)
    root, commit = download_pipeline_parts(REPO, [""], REV_A)
    assert (root, commit) == (snapshot, REV_A)


def test_not_in_the_offline_cache_is_one_hub_error_with_a_hint(cache: Path) -> None:
    with pytest.raises(HubError) as raised:
        download_pipeline_parts("org/absent", ["unet"], REV_A)
    assert "org/absent" in str(raised.value) and raised.value.hint and "--synthetic" in raised.value.hint


def test_hf_home_is_respected_in_a_fresh_process(tmp_path: Path) -> None:
    home = tmp_path / "home"
    add_to_cache(home / "hub", REPO, REV_A, {"model.safetensors": b"x"})
    code = (
        f"from zoo.hub import download_file; print(download_file({REPO!r}, 'model.safetensors', {REV_A!r}))"
    )
    env = {**os.environ, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    env.pop("HF_HUB_CACHE", None)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.strip().startswith(str(home / "hub"))


def _pipeline_in_cache(cache: Path, tmp_path: Path, revision: str) -> None:
    folder = write_synthetic_pipeline(
        [sd15.AUTOENCODER], "tiny", tmp_path / "pipeline", sd15.FAMILY.pipeline_class
    )
    files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    add_to_cache(cache, sd15.HUB_REPO, revision, files)


def test_convert_from_the_cache_records_hub_sources(cache: Path, tmp_path: Path) -> None:
    _pipeline_in_cache(cache, tmp_path, REV_A)
    out = tmp_path / "out"
    convert("sd15.autoencoder", out=out, source=sd15.HUB_REPO, revision=REV_A)
    entry = read_manifest(out / "manifest.json").entries["sd15.autoencoder"]
    assert {s["kind"] for s in entry["sources"]} == {"hub"}
    assert {(s["repo"], s["revision"]) for s in entry["sources"]} == {(sd15.HUB_REPO, REV_A)}
    assert {s["file"] for s in entry["sources"]} == {
        "vae/config.json",
        "vae/diffusion_pytorch_model.safetensors",
    }
    assert entry["license"] == sd15.LICENSE and entry["convert"]["source"] == sd15.HUB_REPO


def test_convert_refuses_a_file_that_does_not_match_its_pin(cache: Path, tmp_path: Path) -> None:
    # Synthetic bytes at the real pinned revision: not the pinned sha256.
    _pipeline_in_cache(cache, tmp_path, sd15.REVISION)
    out = tmp_path / "out"
    with pytest.raises(HashMismatchError, match=re.escape("vae/diffusion_pytorch_model.safetensors")):
        convert("sd15.autoencoder", out=out)
    assert not (out / "manifest.json").exists()


@pytest.mark.parametrize("size", [0, 1, 5 * mmap.ALLOCATIONGRANULARITY // 2])
def test_a_file_is_hashed_window_by_window_as_hashlib_hashes_it_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    monkeypatch.setattr(zoo.hub, "HASH_WINDOW", mmap.ALLOCATIONGRANULARITY)  # several windows, small file
    data = os.urandom(size)
    path = tmp_path / "weights.bin"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_hashing_stops_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "weights.bin"
    path.write_bytes(b"w" * 10)
    stop = threading.Event()
    stop.set()
    with pytest.raises(InterruptedError, match=r"weights\.bin"):
        sha256_file(path, stop)

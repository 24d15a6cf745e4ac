"""Source hashes without a pass of their own: HF cache blob names, else hashed beside the conversion."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

import pytest
from hf_cache import add_to_cache
from huggingface_hub import constants

from converters import sd15
from converters._convert import input_hashes
from converters._convert.by_name import convert
from converters._convert.input_hashes import InputHashes, weights_named_by
from converters._convert.synthetic import write_synthetic_pipeline
from zoo.hub import cached_blob_sha256, hash_file, sha256_file
from zoo.manifest import read_manifest, validate_manifest

NAME = "sd15.autoencoder"
REVISION = "c" * 40  # not the pinned revision: nothing is verified against a pin on the way in
WEIGHTS = "vae/diffusion_pytorch_model.safetensors"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "hf-home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return home / "hub"


def cached_pipeline(cache: Path, tmp_path: Path) -> Path:
    folder = write_synthetic_pipeline([sd15.AUTOENCODER], "tiny", tmp_path / "pipeline", None)
    files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    return add_to_cache(cache, sd15.HUB_REPO, REVISION, files)


def record_opens(path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The list each opening of `path` (to read it) appends to."""
    opened: list[Path] = []
    real_open = Path.open

    def counting_open(self: Path, *args: object, **kwargs: object) -> object:
        if self == path:
            opened.append(self)
        return real_open(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "open", counting_open)
    return opened


def test_an_hf_cache_file_is_named_by_its_blob_not_read(cache: Path, tmp_path: Path) -> None:
    snapshot = cached_pipeline(cache, tmp_path)
    weights = snapshot / WEIGHTS
    named = Path(os.path.realpath(weights)).name
    # Change the blob's bytes behind its name: a run that read them would record another sha256.
    blob = Path(os.path.realpath(weights))
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0x01
    blob.write_bytes(bytes(data))
    out = tmp_path / "out"
    convert(NAME, out=out, source=sd15.HUB_REPO, revision=REVISION)
    manifest = read_manifest(out / "manifest.json")
    source = next(s for s in manifest.entries[NAME]["sources"] if s["file"] == WEIGHTS)
    assert (source["sha256"], source["sha256_from"]) == (named, "hf-cache-blob-name")
    assert source["sha256"] != sha256_file(weights) and validate_manifest(manifest.data) == []


def test_a_local_file_is_hashed_while_the_run_converts(tmp_path: Path) -> None:
    convert(NAME, out=tmp_path / "out", synthetic="tiny")
    manifest = read_manifest(tmp_path / "out" / "manifest.json")
    for source in manifest.entries[NAME]["sources"]:
        assert source["sha256_from"] == "content"
        assert source["sha256"] == sha256_file(tmp_path / "out" / source["path"])
    assert validate_manifest(manifest.data) == []


def test_only_an_lfs_blob_of_the_same_repo_names_a_sha256(cache: Path, tmp_path: Path) -> None:
    snapshot = cached_pipeline(cache, tmp_path)
    weights = snapshot / WEIGHTS
    assert cached_blob_sha256(weights) == sha256_file(weights)
    storage = snapshot.parents[1]
    git_blob = storage / "blobs" / ("e" * 40)  # git files' blobs are named by their git sha1
    git_blob.write_bytes(b"{}")
    (snapshot / "model_index.json").symlink_to(os.path.relpath(git_blob, snapshot))
    copied = snapshot / "copied.json"
    copied.write_bytes(b"{}")  # a snapshot without symlinks (Windows) copies files
    for path in (snapshot / "model_index.json", copied, tmp_path / "pipeline" / WEIGHTS):
        assert cached_blob_sha256(path) is None
        assert hash_file(path).origin == "content"
    assert hash_file(weights).origin == "hf-cache-blob-name"


def test_each_file_is_hashed_once_per_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "weights.bin"
    path.write_bytes(b"x" * 100_000)
    opened = record_opens(path, monkeypatch)
    with InputHashes() as hashes:
        hashes.start([path, tmp_path / "." / "weights.bin"])
        first, second = hashes.get(path), hashes.get(tmp_path / "weights.bin")
    assert first == second and first.sha256 == hashlib.sha256(b"x" * 100_000).hexdigest()
    assert len(opened) == 1


def test_a_hash_asked_after_close_is_still_right(tmp_path: Path) -> None:
    path = tmp_path / "weights.bin"
    path.write_bytes(b"y" * 1000)
    hashes = InputHashes()
    hashes.close()
    assert hashes.get(path).sha256 == hashlib.sha256(b"y" * 1000).hexdigest()


def test_the_schema_knows_how_a_sha256_is_known(tmp_path: Path) -> None:
    convert(NAME, out=tmp_path / "out", synthetic="tiny")
    data = read_manifest(tmp_path / "out" / "manifest.json").data
    data["conversions"][NAME]["sources"][0]["sha256_from"] = "trust me"
    assert any("sha256_from" in problem for problem in validate_manifest(data))
    del data["conversions"][NAME]["sources"][0]["sha256_from"]  # manifests from before it stay valid
    assert validate_manifest(data) == []


def test_the_same_file_is_not_read_again_and_a_changed_one_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ZOO_NO_CACHE", raising=False)
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(input_hashes, "RECENT_NS", 0)  # the file is brand new
    path = tmp_path / "weights.bin"
    path.write_bytes(b"x" * 100_000)
    opened = record_opens(path, monkeypatch)

    def hashed() -> str:
        with InputHashes() as hashes:
            found = hashes.get(path)
        assert found.origin == "content"
        return found.sha256

    assert hashed() == hashed() == hashlib.sha256(b"x" * 100_000).hexdigest()
    assert len(opened) == 1  # the second run remembered it
    stat = path.stat()
    time.sleep(0.05)  # past the file system's clock tick
    # Written through open(), not the counted Path.open; same size, same modification time: only ctime tells.
    with open(path, "r+b") as stream:
        stream.write(b"y")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert hashed() == hashlib.sha256(b"y" + b"x" * 99_999).hexdigest()
    assert len(opened) == 2


def test_a_file_changed_a_moment_ago_is_not_remembered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ZOO_NO_CACHE", raising=False)
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "weights.bin"
    path.write_bytes(b"z" * 1000)
    with InputHashes() as hashes:
        hashes.get(path)
    assert not (tmp_path / "cache" / input_hashes.CACHE_KIND).exists()


def test_a_file_begun_early_that_the_run_does_not_read_is_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "other.safetensors"
    path.write_bytes(b"z" * 1000)
    stopped: list[Path] = []

    def slow_sha256(file: Path, stop: object) -> str:
        assert isinstance(stop, threading.Event)
        if stop.wait(timeout=30):  # a 5 GB file takes seconds: this one waits to be stopped
            stopped.append(file)
            raise InterruptedError
        return "0" * 64

    monkeypatch.setattr(input_hashes, "sha256_file", slow_sha256)
    started = time.perf_counter()
    with InputHashes() as hashes:
        hashes.start([path])
        hashes.keep_only([tmp_path / "read.safetensors"])
    assert time.perf_counter() - started < 10, "the unread file was not stopped"
    assert stopped in ([path], [])  # stopped while hashing, or never started


def test_the_weights_a_source_names_beyond_doubt(tmp_path: Path) -> None:
    single = tmp_path / "model.safetensors"
    single.write_bytes(b"{}")
    component = tmp_path / "unet"
    component.mkdir()
    (component / "config.json").write_text("{}")
    (component / "diffusion_pytorch_model.safetensors").write_bytes(b"{}")
    variants = tmp_path / "vae"
    variants.mkdir()
    (variants / "config.json").write_text("{}")
    for name in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors"):
        (variants / name).write_bytes(b"{}")
    assert weights_named_by(str(single)) == [single]
    assert weights_named_by(str(component)) == [component / "diffusion_pytorch_model.safetensors"]
    assert weights_named_by(str(variants)) == []  # which one is read takes the declaration to know
    assert weights_named_by(str(tmp_path)) == []  # a pipeline's top level: its single file may go unread
    assert weights_named_by("stabilityai/stable-diffusion-xl-base-1.0") == []  # a Hub repo id


def test_the_command_hashes_a_named_source_early_and_records_the_same_sha256(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from zoo.cli import main

    folder = write_synthetic_pipeline([sd15.AUTOENCODER], "tiny", tmp_path / "pipeline", None) / "vae"
    calls: list[tuple[str, list[Path]]] = []
    for method in ("start", "keep_only"):
        real = getattr(InputHashes, method)

        def spy(self: InputHashes, paths: object, method: str = method, real: object = real) -> None:
            calls.append((method, [Path(p) for p in paths]))  # type: ignore[attr-defined]
            real(self, calls[-1][1])  # type: ignore[operator]

        monkeypatch.setattr(InputHashes, method, spy)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["convert", NAME, "--source", str(folder), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.stderr
    assert calls[0] == ("start", [folder / "diffusion_pytorch_model.safetensors"]), "begun before resolving"
    source = read_manifest(out / "manifest.json").entries[NAME]["sources"]
    weights = next(s for s in source if s["role"] == "weights")
    assert weights["sha256"] == sha256_file(folder / "diffusion_pytorch_model.safetensors")

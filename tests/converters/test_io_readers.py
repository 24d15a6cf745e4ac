"""Checkpoint readers: format detection, strict header validation, safe pickles, sharded files.

Every file is built in `tmp_path` from tiny tensors. Hostile inputs must fail with a `FormatError`
that names the file, and the tensor where there is one.
"""

from __future__ import annotations

import builtins
import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from converters._checkpoints import detect_format, open_checkpoint, read_header
from zoo.errors import FormatError

F32_ONES = torch.ones(2, dtype=torch.float32).numpy().tobytes()  # 8 bytes

RawSafetensors = Callable[..., Path]  # the `raw_safetensors` fixture of conftest.py


def tensors() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {
        "b.weight": torch.randn(3, 4, generator=generator),
        "a.bias": torch.randn(4, generator=generator).to(torch.float16),
        "c.scale": torch.randn(2, generator=generator).to(torch.bfloat16),
    }


def entry(dtype: str, shape: list[int], begin: int, end: int) -> dict[str, object]:
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def assert_format_error(path: Path, match: str, tensor: str | None = None) -> FormatError:
    with pytest.raises(FormatError, match=match) as caught:
        with open_checkpoint(path) as reader:
            reader.keys()
    assert caught.value.file == str(path)
    assert str(path) in str(caught.value)
    if tensor is not None:
        assert caught.value.tensor == tensor
    return caught.value


# --- Format detection ---------------------------------------------------------------------------


def test_detects_formats_from_content_not_extension(tmp_path: Path) -> None:
    save_file(tensors(), tmp_path / "safetensors.bin")
    torch.save(tensors(), tmp_path / "zip.safetensors")
    torch.save(tensors(), tmp_path / "legacy.ckpt", _use_new_zipfile_serialization=False)
    assert detect_format(tmp_path / "safetensors.bin") == "safetensors"
    assert detect_format(tmp_path / "zip.safetensors") == "pickle-zip"
    assert detect_format(tmp_path / "legacy.ckpt") == "pickle-legacy"


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (
            b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"0" * 64 + b"\nsize 5135149760\n",
            r"Git LFS pointer, not the weights: run `git lfs pull` or download the file itself",
        ),
        (
            b"\n<!DOCTYPE html>\n<html><head><title>Sign in</title></head></html>",
            "HTML/XML page, not the weights",
        ),
        (b"", "empty file"),
        (b"   \n", "nothing but whitespace"),
        (b'{"error": "Repository not found"}', "JSON document, not weights.*Repository not found"),
        (b"GGUF\x03\x00\x00\x00", "GGUF"),
        (b"\x00\x01\x02 random bytes", "not a checkpoint format"),
    ],
    ids=["lfs-pointer", "html", "empty", "whitespace", "json-error", "gguf", "random"],
)
def test_refuses_what_is_not_a_checkpoint(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "diffusion_pytorch_model.safetensors"
    path.write_bytes(content)
    with pytest.raises(FormatError, match=match) as caught:
        detect_format(path)
    assert caught.value.file == str(path)
    assert_format_error(path, match)


def test_refuses_a_zip_that_is_not_a_torch_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("weights.npy", b"\x93NUMPY")
    assert_format_error(path, "zip archive, but not a PyTorch checkpoint")


# --- Safetensors ------------------------------------------------------------------------------


def test_reads_safetensors_lazily_and_exactly(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    source = tensors()
    save_file(source, path, metadata={"format": "pt"})
    with open_checkpoint(path) as reader:
        assert (reader.path, reader.format) == (path, "safetensors")
        assert reader.keys() == ["a.bias", "b.weight", "c.scale"]
        assert reader.metadata == {"format": "pt"}
        for key, tensor in source.items():
            assert reader.shape(key) == tuple(tensor.shape)
            assert reader.dtype(key) == tensor.dtype
            assert reader.nbytes(key) == tensor.numel() * tensor.element_size()
            assert torch.equal(reader.get(key), tensor)
        with pytest.raises(KeyError, match="missing"):
            reader.get("missing")


def test_many_reads_stay_correct_across_handle_reopens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The reader maps the file afresh every REMAP_AFTER_BYTES to bound RSS; force it often.
    monkeypatch.setattr("converters._checkpoints.mapped.REMAP_AFTER_BYTES", 1)
    path = tmp_path / "model.safetensors"
    source = {f"t{index}": torch.full((3,), float(index)) for index in range(5)}
    save_file(source, path)
    with open_checkpoint(path) as reader:
        loaded = {key: reader.get(key) for key in reader.keys()}
    assert all(torch.equal(loaded[key], source[key]) for key in source)


def test_truncated_safetensors_names_the_tensor_past_the_end(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    save_file({"a": torch.ones(4), "b": torch.ones(4)}, path)
    path.write_bytes(path.read_bytes()[:-3])
    assert_format_error(path, "truncated or corrupt", tensor="b")


def test_header_length_larger_than_the_file(raw_safetensors: RawSafetensors) -> None:
    path = raw_safetensors({"a": entry("F32", [2], 0, 8)}, F32_ONES, length=10**9)
    assert_format_error(path, "header length 1000000000 is larger than the file")


HOSTILE_HEADERS = {
    "invalid-json": (b'{"a": {"dtype": "F32",', b"", "not valid JSON", None),
    "invalid-utf8": (b'{"\xff": {}}', b"", "not valid UTF-8", None),
    "out-of-bounds": ({"a": entry("F32", [4], 0, 16)}, F32_ONES, "run past the 8-byte data section", "a"),
    "overlapping": (
        {"a": entry("F32", [2], 0, 8), "b": entry("F32", [2], 4, 12)},
        F32_ONES + F32_ONES[:4],
        "overlap tensor 'a'",
        "b",
    ),
    "gap": (
        {"a": entry("F32", [1], 0, 4), "b": entry("F32", [1], 8, 12)},
        F32_ONES + F32_ONES[:4],
        "gap of 4",
        "b",
    ),
    "trailing-bytes": (
        {"a": entry("F32", [1], 0, 4)},
        F32_ONES,
        "cover 4 bytes but the data section holds 8",
        None,
    ),
    "size-mismatch": ({"a": entry("F32", [3], 0, 8)}, F32_ONES, r"F32 x shape \[3\] needs 12 bytes", "a"),
    "unknown-dtype": ({"a": entry("F48", [2], 0, 8)}, F32_ONES, "unknown or unsupported dtype 'F48'", "a"),
    "reversed-offsets": ({"a": entry("F32", [0], 8, 0)}, F32_ONES, "not a .begin, end. pair", "a"),
    "negative-dim": ({"a": entry("F32", [-2], 0, 8)}, F32_ONES, "non-negative integers", "a"),
    "bool-dim": ({"a": entry("F32", [True, 2], 0, 8)}, F32_ONES, "non-negative integers", "a"),
    "extra-field": ({"a": {**entry("F32", [2], 0, 8), "x": 1}}, F32_ONES, "exactly 'dtype', 'shape'", "a"),
    "metadata-not-str": (
        {"__metadata__": {"epoch": 3}, "a": entry("F32", [2], 0, 8)},
        F32_ONES,
        "maps str to str",
        None,
    ),
    "duplicate-tensor": (
        b'{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},'
        b' "a": {"dtype": "F16", "shape": [4], "data_offsets": [0, 8]}}',
        F32_ONES,
        "JSON key 'a' appears twice",
        "a",
    ),
    "duplicate-field": (
        b'{"a": {"dtype": "F32", "dtype": "I32", "shape": [2], "data_offsets": [0, 8]}}',
        F32_ONES,
        r"JSON key 'dtype' appears twice \(in \['a'\]\)",
        "a",
    ),
}


@pytest.mark.parametrize(
    ("header", "data", "match", "tensor"), HOSTILE_HEADERS.values(), ids=HOSTILE_HEADERS.keys()
)
def test_refuses_hostile_headers(
    raw_safetensors: RawSafetensors,
    header: dict[str, object] | bytes,
    data: bytes,
    match: str,
    tensor: str | None,
) -> None:
    path = raw_safetensors(header, data)
    with pytest.raises(FormatError, match=match):
        read_header(path)
    assert_format_error(path, match, tensor=tensor)


def test_header_must_be_a_json_object(raw_safetensors: RawSafetensors) -> None:
    # Detection already calls this "not a checkpoint format" (a header starts with "{"); the
    # header parser must refuse it on its own too.
    path = raw_safetensors(b"[1, 2]")
    with pytest.raises(FormatError, match="header is a JSON list, not an object"):
        read_header(path)


def test_accepts_zero_size_tensors_and_space_padding(raw_safetensors: RawSafetensors) -> None:
    header = {"a": entry("F32", [2], 0, 8), "empty": entry("F16", [0, 3], 8, 8)}
    path = raw_safetensors(json.dumps(header).encode() + b"   ", F32_ONES)
    with open_checkpoint(path) as reader:
        assert reader.keys() == ["a", "empty"]
        assert reader.get("empty").shape == (0, 3)
        assert torch.equal(reader.get("a"), torch.ones(2))


# --- Pickles ------------------------------------------------------------------------------------


class WritesAMarker:
    """Unpickling this calls `open(marker, "w")`, creating the file: a harmless stand-in for code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (builtins.open, (str(self.marker), "w"))


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_reads_pickles_with_weights_only(tmp_path: Path, zip_format: bool) -> None:
    path = tmp_path / "model.ckpt"
    source = tensors()
    torch.save(source, path, _use_new_zipfile_serialization=zip_format)
    with open_checkpoint(path) as reader:
        assert reader.format == ("pickle-zip" if zip_format else "pickle-legacy")
        assert reader.keys() == sorted(source)
        assert reader.metadata == {}
        for key, tensor in source.items():
            assert (reader.shape(key), reader.dtype(key)) == (tuple(tensor.shape), tensor.dtype)
            assert reader.nbytes(key) == tensor.numel() * tensor.element_size()
            assert torch.equal(reader.get(key), tensor)


def test_uses_the_nested_state_dict_of_lightning_checkpoints(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    source = tensors()
    torch.save({"state_dict": source, "epoch": 3, "global_step": 1200}, path)
    with open_checkpoint(path) as reader:
        assert reader.keys() == sorted(source)
        assert torch.equal(reader.get("b.weight"), source["b.weight"])


def test_flattens_a_dict_of_state_dicts_into_dotted_names(tmp_path: Path) -> None:
    path = tmp_path / "adapter.bin"
    image_proj, ip_adapter = {"proj.weight": torch.ones(4, 2)}, {"1.to_k_ip.weight": torch.zeros(3, 2)}
    torch.save({"image_proj": image_proj, "ip_adapter": ip_adapter}, path)
    with open_checkpoint(path) as reader:
        assert reader.keys() == ["image_proj.proj.weight", "ip_adapter.1.to_k_ip.weight"]
        assert torch.equal(reader.get("ip_adapter.1.to_k_ip.weight"), ip_adapter["1.to_k_ip.weight"])


def test_refuses_nested_names_that_collide_once_flattened(tmp_path: Path) -> None:
    path = tmp_path / "adapter.bin"
    torch.save({"a": {"b": torch.ones(1)}, "a.b": torch.ones(1)}, path)
    assert_format_error(path, "two entries of the nested state dict have the same name")


def test_refuses_non_tensor_values_in_the_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save({"state_dict": {**tensors(), "step": 3, "config": {"lr": 1e-4}}}, path)
    assert_format_error(path, r"2 entries that are not named tensors: 'step' \(int\), 'config' \(dict\)")


def test_refuses_a_pickle_that_is_not_a_dict(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save(torch.ones(3), path)
    assert_format_error(path, "holds a Tensor, not a state dict")


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_never_runs_code_from_a_pickle(tmp_path: Path, zip_format: bool) -> None:
    marker = tmp_path / "payload-ran"
    path = tmp_path / "model.ckpt"
    torch.save(
        {"weight": torch.ones(2), "payload": WritesAMarker(marker)},
        path,
        _use_new_zipfile_serialization=zip_format,
    )

    error = assert_format_error(path, "refusing to unpickle code")
    assert "trusted tool" in (error.hint or "")
    assert not marker.exists()

    # The payload is live: an unsafe load does run it, so the assertion above means something.
    loaded = torch.load(path, weights_only=False)
    loaded["payload"].close()
    assert marker.exists()


def test_refuses_a_corrupt_pickle(tmp_path: Path) -> None:
    path = tmp_path / "model.ckpt"
    torch.save(tensors(), path, _use_new_zipfile_serialization=False)
    path.write_bytes(path.read_bytes()[:40])
    assert_format_error(path, "cannot (read|unpickle) this")


# --- Sharded safetensors --------------------------------------------------------------------------


def make_sharded(
    folder: Path, weight_map: dict[str, str] | bytes, shards: dict[str, dict[str, torch.Tensor]]
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in shards.items():
        save_file(content, folder / name, metadata={"format": "pt"})
    index = folder / "model.safetensors.index.json"
    raw = (
        weight_map
        if isinstance(weight_map, bytes)
        else json.dumps({"metadata": {"total_size": 1}, "weight_map": weight_map}).encode()
    )
    index.write_bytes(raw)
    return index


def two_shards() -> dict[str, dict[str, torch.Tensor]]:
    return {
        "s1.safetensors": {"a": torch.ones(2)},
        "s2.safetensors": {"b": torch.zeros(3), "c": torch.ones(1)},
    }


def test_reads_sharded_safetensors_as_one_checkpoint(tmp_path: Path) -> None:
    index = make_sharded(
        tmp_path / "ckpt", {"a": "s1.safetensors", "b": "s2.safetensors", "c": "s2.safetensors"}, two_shards()
    )
    for path in (index, index.parent):
        assert detect_format(path) == "sharded-safetensors"
        with open_checkpoint(path) as reader:
            assert (reader.path, reader.format) == (path, "sharded-safetensors")
            assert reader.keys() == ["a", "b", "c"]
            assert reader.metadata == {"format": "pt"}
            assert (reader.shape("b"), reader.dtype("b"), reader.nbytes("b")) == ((3,), torch.float32, 12)
            assert torch.equal(reader.get("a"), torch.ones(2))
            assert torch.equal(reader.get("b"), torch.zeros(3))


@pytest.mark.parametrize(
    "shard", ["../outside.safetensors", "/tmp/outside.safetensors", "sub/../../outside.safetensors"]
)
def test_refuses_shards_outside_the_folder(tmp_path: Path, shard: str) -> None:
    save_file({"a": torch.ones(2)}, tmp_path / "outside.safetensors")
    index = make_sharded(tmp_path / "ckpt", {"a": shard}, {})
    assert_format_error(index, "points outside the checkpoint folder", tensor="a")


def test_refuses_a_symlink_out_of_the_folder(tmp_path: Path) -> None:
    save_file({"a": torch.ones(2)}, tmp_path / "outside.safetensors")
    index = make_sharded(tmp_path / "ckpt", {"a": "s1.safetensors"}, {})
    (index.parent / "s1.safetensors").symlink_to(tmp_path / "outside.safetensors")
    assert_format_error(index, "points outside the checkpoint folder", tensor="a")


def test_refuses_a_missing_shard(tmp_path: Path) -> None:
    index = make_sharded(tmp_path / "ckpt", {"a": "s1.safetensors", "b": "s3.safetensors"}, two_shards())
    assert_format_error(index, "shard 's3.safetensors' listed in weight_map is missing", tensor="b")


def test_refuses_a_tensor_listed_twice_in_weight_map(tmp_path: Path) -> None:
    raw = b'{"weight_map": {"a": "s1.safetensors", "b": "s2.safetensors", "c": "s2.safetensors", "a": "s2.safetensors"}}'
    index = make_sharded(tmp_path / "ckpt", raw, two_shards())
    assert_format_error(index, r"JSON key 'a' appears twice \(in \['weight_map'\]\)", tensor="a")


def test_refuses_a_tensor_stored_in_two_shards(tmp_path: Path) -> None:
    shards = {
        "s1.safetensors": {"a": torch.ones(2)},
        "s2.safetensors": {"a": torch.ones(2), "b": torch.ones(1)},
    }
    index = make_sharded(tmp_path / "ckpt", {"a": "s1.safetensors", "b": "s2.safetensors"}, shards)
    assert_format_error(index, "stored in two shards: s1.safetensors and s2.safetensors", tensor="a")


def test_refuses_a_shard_tensor_missing_from_weight_map(tmp_path: Path) -> None:
    index = make_sharded(tmp_path / "ckpt", {"a": "s1.safetensors", "b": "s2.safetensors"}, two_shards())
    assert_format_error(index, "holds this tensor but weight_map lists it in nowhere", tensor="c")


def test_refuses_a_weight_map_entry_its_shard_does_not_hold(tmp_path: Path) -> None:
    weight_map = {"a": "s1.safetensors", "b": "s2.safetensors", "c": "s2.safetensors", "d": "s1.safetensors"}
    index = make_sharded(tmp_path / "ckpt", weight_map, two_shards())
    assert_format_error(index, "lists this tensor in s1.safetensors, which does not hold it", tensor="d")


def test_refuses_a_folder_without_an_index(tmp_path: Path) -> None:
    save_file({"a": torch.ones(2)}, tmp_path / "model.safetensors")
    assert_format_error(tmp_path, "holds no \\*.safetensors.index.json")

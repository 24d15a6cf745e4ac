"""Tensors as views of a mapped file, and `locate`: the way back from such a view to the file's bytes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from converters._checkpoints import open_checkpoint
from converters._checkpoints.mapped import FileSpan, locate


def span_bytes(span: FileSpan, chunk_bytes: int = 8) -> bytes:
    return b"".join(bytes(chunk) for chunk in span.chunks(chunk_bytes))


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    generator = torch.Generator().manual_seed(0)
    path = tmp_path / "model.safetensors"
    save_file(
        {
            "qkv": torch.randn(6, 4, generator=generator),
            "conv": torch.randn(3, 5, 1, 1, generator=generator).to(torch.float16),
            "complex": torch.randn(3, generator=generator).to(torch.complex64),
        },
        path,
    )
    return path


@pytest.mark.parametrize(
    ("key", "view"),
    [
        ("qkv", lambda t: t),
        ("qkv", lambda t: t.reshape(24)),
        ("qkv", lambda t: t.chunk(3)[1]),
        ("qkv", lambda t: t[2:4]),
        ("conv", lambda t: t.reshape(3, 5)),
        ("conv", lambda t: t.view(torch.int16)),
    ],
    ids=["as-is", "reshaped", "chunk-of-three", "rows", "1x1-conv-as-linear", "reinterpreted"],
)
def test_a_contiguous_unchanged_view_is_found_in_its_file(checkpoint: Path, key: str, view: object) -> None:
    with open_checkpoint(checkpoint) as reader:
        tensor = view(reader.get(key))  # type: ignore[operator]
        span = locate(tensor)
    assert span is not None and span.nbytes == tensor.numel() * tensor.element_size()
    assert span_bytes(span) == tensor.contiguous().view(torch.uint8).numpy().tobytes()
    assert checkpoint.read_bytes()[span.offset : span.offset + span.nbytes] == span_bytes(span)


@pytest.mark.parametrize(
    ("key", "change"),
    [
        ("qkv", lambda t: t.t()),
        ("qkv", lambda t: t[:, 1:3]),
        ("qkv", lambda t: t * 2),
        ("qkv", lambda t: t.to(torch.float16)),
        ("complex", lambda t: t.conj()),
        ("qkv", lambda t: -t),
    ],
    ids=["transposed", "columns", "computed", "cast", "conjugate", "negated"],
)
def test_any_other_tensor_is_not(checkpoint: Path, key: str, change: object) -> None:
    with open_checkpoint(checkpoint) as reader:
        assert locate(change(reader.get(key))) is None  # type: ignore[operator]


def test_a_view_changed_in_place_is_not_trusted(checkpoint: Path) -> None:
    original = checkpoint.read_bytes()
    with open_checkpoint(checkpoint) as reader:
        tensor = reader.get("qkv")
        part = tensor[0:2]
        part.mul_(2)  # copy-on-write: this process's copy changes, never the file
        assert locate(part) is None and locate(tensor) is None
    assert checkpoint.read_bytes() == original


def test_tensors_not_from_a_file_are_not_found() -> None:
    assert locate(torch.ones(4)) is None
    assert locate(torch.empty(0)) is None
    assert locate(torch.ones(2, device="meta")) is None


def test_tensors_outlive_their_reader_and_mapping(checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A new mapping every byte: every tensor keeps its own mapping alive, and is still found in it.
    monkeypatch.setattr("converters._checkpoints.mapped.REMAP_AFTER_BYTES", 1)
    with open_checkpoint(checkpoint) as reader:
        tensors = {key: reader.get(key) for key in reader.keys()}
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    for tensor in tensors.values():
        span = locate(tensor)
        assert span is not None and span_bytes(span) == tensor.view(torch.uint8).numpy().tobytes()
    assert hashlib.sha256(checkpoint.read_bytes()).hexdigest() == digest

"""Fixtures for the checkpoint I/O tests: hand-built safetensors files, valid or hostile."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture
def raw_safetensors(tmp_path: Path) -> Callable[..., Path]:
    """Returns a function writing a safetensors file byte by byte, so tests can break any rule.

    The function takes `header` (a dict, serialized as given, or raw bytes), `data` (the data
    section), `name` (the file name in `tmp_path`) and `length` (overrides the 8-byte header
    length), and returns the file's path.
    """

    def write(
        header: dict[str, object] | bytes,
        data: bytes = b"",
        *,
        name: str = "model.safetensors",
        length: int | None = None,
    ) -> Path:
        raw = header if isinstance(header, bytes) else json.dumps(header).encode()
        path = tmp_path / name
        path.write_bytes(struct.pack("<Q", len(raw) if length is None else length) + raw + data)
        return path

    return write

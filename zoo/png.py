"""Writing images as PNG with text metadata, with the standard library only (zlib and struct).

An image tensor (1 or no batch, 3 channels, H, W) in [0, 1] becomes 8-bit RGB, rounded as diffusers'
image processor and PIL round it (`(x * 255).round()`); each metadata entry becomes a `tEXt` chunk
(keyword and Latin-1 text) or an `iTXt` chunk (UTF-8) when the text needs it, so the generation
parameters travel with the image.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping
from pathlib import Path

import torch

from zoo.files import write_bytes_atomic

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_RGB8 = struct.pack(">BBBBB", 8, 2, 0, 0, 0)  # 8 bits per channel, RGB, deflate, no filter, no interlace


def to_rgb8(image: torch.Tensor) -> torch.Tensor:
    """(H, W, 3) uint8 from a (1, 3, H, W) or (3, H, W) tensor in [0, 1]."""
    if image.dim() == 4:
        if image.shape[0] != 1:
            raise ValueError(f"one image at a time, got a batch of {image.shape[0]}")
        image = image[0]
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"expected (3, H, W), got {tuple(image.shape)}")
    return (image.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0)


def png_bytes(image: torch.Tensor, metadata: Mapping[str, str] | None = None) -> bytes:
    """The PNG file of an image tensor in [0, 1], with `metadata` as text chunks."""
    pixels = to_rgb8(image)
    height, width, _ = pixels.shape
    rows = torch.cat([torch.zeros(height, 1, dtype=torch.uint8), pixels.reshape(height, width * 3)], dim=1)
    chunks = [_chunk(b"IHDR", struct.pack(">II", width, height) + _RGB8)]
    chunks += [_text_chunk(key, value) for key, value in (metadata or {}).items()]
    chunks += [_chunk(b"IDAT", zlib.compress(rows.numpy().tobytes(), 6)), _chunk(b"IEND", b"")]
    return SIGNATURE + b"".join(chunks)


def write_png(path: str | Path, image: torch.Tensor, metadata: Mapping[str, str] | None = None) -> Path:
    """Write the PNG atomically; returns its path."""
    path = Path(path)
    write_bytes_atomic(path, png_bytes(image, metadata))
    return path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _text_chunk(key: str, value: str) -> bytes:
    keyword = key.encode("latin-1")
    if not 1 <= len(keyword) <= 79:
        raise ValueError(f"a PNG keyword has 1 to 79 characters, got {key!r}")
    try:
        return _chunk(b"tEXt", keyword + b"\0" + value.encode("latin-1"))
    except UnicodeEncodeError:  # iTXt: keyword, no compression, no language, no translated keyword
        return _chunk(b"iTXt", keyword + b"\0\0\0\0\0" + value.encode("utf-8"))


__all__ = ["png_bytes", "to_rgb8", "write_png"]

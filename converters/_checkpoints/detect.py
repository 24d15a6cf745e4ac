"""Tells what a checkpoint file is from its content, never from its name.

Users hand us files named `.safetensors` that are Git LFS pointers, login pages saved by a browser,
or zero-byte leftovers of a failed download. Each of these gets a `FormatError` that says what the
file really is and what to do, instead of a confusing failure deep inside a loader.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Literal

from zoo.errors import FormatError

CheckpointFormat = Literal["safetensors", "pickle-zip", "pickle-legacy", "sharded-safetensors"]

INDEX_SUFFIX = ".safetensors.index.json"

_HEAD_BYTES = 512
# Shard indexes are a few MB even for the largest models; a bigger JSON file is not one.
_MAX_INDEX_BYTES = 64 * 1024 * 1024
_LFS_POINTER = b"version https://git-lfs.github.com/spec/"
_TEXT_PADDING = b"\xef\xbb\xbf \t\r\n"  # a UTF-8 byte-order mark and ASCII whitespace
_OTHER_FORMATS = (
    (b"GGUF", "a GGUF file (llama.cpp)"),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file (Keras/TensorFlow)"),
    (b"\x93NUMPY", "a NumPy .npy array"),
    (b"\x1f\x8b", "a gzip archive"),
)


def detect_format(path: str | os.PathLike[str]) -> CheckpointFormat:
    """Detects the format of a checkpoint from its content.

    Args:
        path: A file, a `*.safetensors.index.json` file, or a folder holding one.

    Returns:
        `"safetensors"`, `"pickle-zip"` (torch's zip format), `"pickle-legacy"` (torch's format
        before 1.6) or `"sharded-safetensors"` (a folder or an index file).

    Raises:
        FormatError: The file is empty, a Git LFS pointer, a web page, or anything else that is
            not one of the formats above; the message says which.
    """
    file = Path(path)
    if file.is_dir():
        find_shard_index(file)
        return "sharded-safetensors"
    with file.open("rb") as stream:
        head = stream.read(_HEAD_BYTES)
    if _is_safetensors(head):
        return "safetensors"
    if head.startswith(b"PK\x03\x04"):
        return _zip_format(file)
    if _is_pickle(head):
        return "pickle-legacy"
    return _text_format(file, head.lstrip(_TEXT_PADDING))


def find_shard_index(folder: Path) -> Path:
    """Returns the one `*.safetensors.index.json` file in a folder.

    Raises:
        FormatError: The folder holds no index, or several.
    """
    candidates = sorted(folder.glob(f"*{INDEX_SUFFIX}"))
    if not candidates:
        raise FormatError(
            f"this folder holds no *{INDEX_SUFFIX}, so it is not a sharded safetensors checkpoint",
            file=folder,
            hint="pass the checkpoint file itself",
        )
    if len(candidates) > 1:
        names = ", ".join(candidate.name for candidate in candidates)
        raise FormatError(
            f"this folder holds several shard indexes ({names})", file=folder, hint="pass one of them"
        )
    return candidates[0]


def _is_safetensors(head: bytes) -> bool:
    # An 8-byte little-endian length, then the JSON header. A real length is far below 2**56, so
    # its last byte is zero, which no JSON or text file has in its first eight bytes.
    return len(head) > 8 and head[7] == 0 and head[8:9] == b"{"


def _is_pickle(head: bytes) -> bool:
    # torch.save's legacy format is a sequence of pickles; each starts with PROTO and a version.
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def _zip_format(file: Path) -> CheckpointFormat:
    try:
        with zipfile.ZipFile(file) as archive:
            names = archive.namelist()
    except zipfile.BadZipFile as error:
        raise FormatError(f"this is a damaged zip archive ({error})", file=file) from None
    # torch.save writes `<archive name>/data.pkl` next to the tensor storages.
    if any(name == "data.pkl" or name.endswith("/data.pkl") for name in names):
        return "pickle-zip"
    raise FormatError("this is a zip archive, but not a PyTorch checkpoint (it has no data.pkl)", file=file)


def _text_format(file: Path, text: bytes) -> CheckpointFormat:
    if not text:
        what = "an empty file" if file.stat().st_size == 0 else "a file of nothing but whitespace"
        raise FormatError(
            f"this is {what}, not the weights",
            file=file,
            hint="the download or copy did not finish: fetch it again",
        )
    if text.startswith(_LFS_POINTER):
        raise FormatError(
            "this is a Git LFS pointer, not the weights: run `git lfs pull` or download the file itself",
            file=file,
        )
    if text.startswith(b"<"):
        raise FormatError(
            "this is an HTML/XML page, not the weights (a login, error or redirect page saved instead of the file)",
            file=file,
            hint="check the URL and your access token, and download the file itself",
        )
    if text.startswith(b"{"):
        return _json_format(file)
    raise FormatError(_describe_unknown(text), file=file)


def _json_format(file: Path) -> CheckpointFormat:
    if file.stat().st_size > _MAX_INDEX_BYTES:
        raise FormatError("this looks like a large JSON document, not weights", file=file)
    try:
        document = json.loads(file.read_bytes())
    except ValueError:  # JSONDecodeError and UnicodeDecodeError both derive from it
        raise FormatError("this starts like JSON but is neither JSON nor weights", file=file) from None
    if isinstance(document, dict) and "weight_map" in document:
        return "sharded-safetensors"
    detail = f": {document['error']}" if isinstance(document, dict) and "error" in document else ""
    raise FormatError(f"this is a JSON document, not weights or a shard index{detail}", file=file)


def _describe_unknown(head: bytes) -> str:
    for signature, name in _OTHER_FORMATS:
        if head.startswith(signature):
            return f"this is {name}, not a PyTorch or safetensors checkpoint"
    return f"this is not a checkpoint format zoo reads (it starts with {head[:16]!r})"


__all__ = ["INDEX_SUFFIX", "CheckpointFormat", "detect_format", "find_shard_index"]

"""Our own parser, validator and encoder for the safetensors header.

The layout (https://huggingface.co/docs/safetensors) is: an 8-byte little-endian header length `N`,
`N` bytes of UTF-8 JSON mapping each tensor name to `{"dtype", "shape", "data_offsets"}` (plus an
optional `"__metadata__"` str→str map), then the data section, which the tensors must tile exactly.

The reference parser is lenient where we are not: it keeps the last of duplicate JSON keys, which
lets two tools disagree on what a file holds. Everything here is checked before any tensor is
loaded, and every failure is a `FormatError` naming the file and, where there is one, the tensor.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from zoo.errors import FormatError

METADATA_KEY = "__metadata__"

# The reference parser refuses headers above 100 MB; so do we, before reading them into memory.
MAX_HEADER_BYTES = 100_000_000

# The safetensors dtype names zoo reads and writes. Formats with no torch dtype (F4, F6_*) are left
# out on purpose: a file using them fails with "unsupported dtype" rather than later in torch.
DTYPES: Mapping[str, torch.dtype] = {
    "BOOL": torch.bool,
    "U8": torch.uint8,
    "I8": torch.int8,
    "U16": torch.uint16,
    "I16": torch.int16,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "U32": torch.uint32,
    "I32": torch.int32,
    "F32": torch.float32,
    "U64": torch.uint64,
    "I64": torch.int64,
    "F64": torch.float64,
    "C64": torch.complex64,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}
DTYPE_NAMES: Mapping[torch.dtype, str] = {dtype: name for name, dtype in DTYPES.items()}


@dataclass(frozen=True)
class TensorEntry:
    """One tensor as the header describes it.

    Attributes:
        name: The tensor's key.
        dtype: The safetensors dtype name (`"F16"`, `"BF16"`, ...).
        shape: The tensor's shape.
        begin: Start of its bytes, relative to the data section.
        end: End (exclusive) of its bytes, relative to the data section.
    """

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def nbytes(self) -> int:
        """Number of bytes the tensor occupies in the data section."""
        return self.end - self.begin

    @property
    def torch_dtype(self) -> torch.dtype:
        """The torch dtype of the tensor."""
        return DTYPES[self.dtype]


@dataclass(frozen=True)
class SafetensorsHeader:
    """A validated header.

    Attributes:
        header_size: `N`, the length of the JSON header in bytes.
        entries: The tensors, by name.
        metadata: The `__metadata__` map (empty when absent).
    """

    header_size: int
    entries: Mapping[str, TensorEntry]
    metadata: Mapping[str, str]

    @property
    def data_start(self) -> int:
        """Absolute file offset where the data section starts."""
        return 8 + self.header_size


def read_header(path: str | os.PathLike[str]) -> SafetensorsHeader:
    """Reads and validates the header of a safetensors file, without touching the tensor data.

    Args:
        path: The file to read.

    Returns:
        The validated header.

    Raises:
        FormatError: The file is truncated, the header is malformed, or the offsets do not tile
            the data section exactly.
    """
    file = Path(path)
    file_size = file.stat().st_size
    with file.open("rb") as stream:
        header_size = _read_header_size(stream.read(8), file_size, file)
        raw = stream.read(header_size)
    return parse_header(raw, data_size=file_size - 8 - header_size, file=file)


def _read_header_size(prefix: bytes, file_size: int, file: Path) -> int:
    if len(prefix) < 8:
        raise FormatError(
            f"truncated safetensors file: {file_size} bytes, too short for the 8-byte header length",
            file=file,
        )
    (header_size,) = struct.unpack("<Q", prefix)
    if header_size > file_size - 8:
        raise FormatError(
            f"header length {header_size} is larger than the file ({file_size} bytes): "
            "the file is truncated or not safetensors",
            file=file,
        )
    if header_size > MAX_HEADER_BYTES:
        raise FormatError(f"header length {header_size} exceeds the {MAX_HEADER_BYTES}-byte limit", file=file)
    return header_size


def parse_header(raw: bytes, *, data_size: int, file: str | os.PathLike[str]) -> SafetensorsHeader:
    """Parses and validates the JSON header bytes.

    Args:
        raw: The `N` header bytes (without the 8-byte length prefix).
        data_size: Size of the data section that follows the header, in bytes.
        file: The file the header comes from, for error messages.

    Returns:
        The validated header.

    Raises:
        FormatError: On any violation of the format; see the module docstring.
    """
    document = _decode_json(raw, Path(file))
    metadata = _parse_metadata(document.pop(METADATA_KEY, {}), Path(file))
    entries = {name: _parse_entry(name, value, Path(file)) for name, value in document.items()}
    _check_tiling(list(entries.values()), data_size, Path(file))
    return SafetensorsHeader(header_size=len(raw), entries=entries, metadata=metadata)


def loads_strict_json(text: str | bytes, *, file: Path, name_depth: int = 0, what: str = "header") -> Any:
    """Parses JSON, refusing duplicate keys at any depth (the standard library keeps the last one).

    Args:
        text: The JSON document.
        file: The file it comes from, for error messages.
        name_depth: Depth of the keys that name tensors (0: top-level keys, as in a safetensors
            header; 1: keys of a top-level object, as in an index's `weight_map`), so that a
            duplicate is reported against the tensor it concerns.
        what: What the document is, for error messages.

    Returns:
        The parsed document.

    Raises:
        FormatError: The document is not valid UTF-8 JSON or repeats a key.
    """
    # Objects are recorded, not just their ids, so an id cannot be reused by a later object.
    duplicates: list[tuple[dict[str, Any], str]] = []

    def record_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                duplicates.append((result, key))
            result[key] = value
        return result

    try:
        document = json.loads(text, object_pairs_hook=record_duplicates)
    except UnicodeDecodeError as error:
        raise FormatError(f"{what} is not valid UTF-8: {error.reason}", file=file) from None
    except json.JSONDecodeError as error:
        raise FormatError(f"{what} is not valid JSON: {error}", file=file) from None
    if duplicates:
        raise _duplicate_key_error(document, *duplicates[0], file=file, name_depth=name_depth)
    return document


def _duplicate_key_error(
    document: Any, owner: dict[str, Any], key: str, *, file: Path, name_depth: int
) -> FormatError:
    path = (*(_json_path(document, owner) or ()), key)
    where = "".join(f"[{part!r}]" for part in path[:-1]) or "the top level"
    tensor = path[name_depth] if len(path) > name_depth and path[0] != METADATA_KEY else None
    return FormatError(f"JSON key {key!r} appears twice (in {where})", file=file, tensor=tensor)


def _json_path(node: Any, target: dict[str, Any], path: tuple[str, ...] = ()) -> tuple[str, ...] | None:
    """Returns the keys leading from `node` to the object `target`, or None if it is not inside."""
    if node is target:
        return path
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        found = _json_path(child, target, (*path, str(key)))
        if found is not None:
            return found
    return None


def _decode_json(raw: bytes, file: Path) -> dict[str, Any]:
    document = loads_strict_json(raw, file=file)
    if not isinstance(document, dict):
        raise FormatError(f"header is a JSON {type(document).__name__}, not an object", file=file)
    return document


def _parse_metadata(value: object, file: Path) -> dict[str, str]:
    if not isinstance(value, dict):
        raise FormatError(
            f"{METADATA_KEY} must be an object of strings, not {type(value).__name__}", file=file
        )
    for key, item in value.items():
        if not isinstance(item, str):
            raise FormatError(
                f"{METADATA_KEY}[{key!r}] is a {type(item).__name__}; safetensors metadata maps str to str",
                file=file,
            )
    return dict(value)


def _parse_entry(name: str, value: object, file: Path) -> TensorEntry:
    if not isinstance(value, dict) or set(value) != {"dtype", "shape", "data_offsets"}:
        raise FormatError(
            "tensor entry must be an object with exactly 'dtype', 'shape' and 'data_offsets'",
            file=file,
            tensor=name,
        )
    dtype = value["dtype"]
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise FormatError(
            f"unknown or unsupported dtype {dtype!r}", file=file, tensor=name, hint=f"known: {sorted(DTYPES)}"
        )
    shape = _int_list(value["shape"], "shape", name, file)
    offsets = _int_list(value["data_offsets"], "data_offsets", name, file)
    if len(offsets) != 2 or offsets[0] > offsets[1]:
        raise FormatError(f"data_offsets {offsets} is not a [begin, end] pair", file=file, tensor=name)
    entry = TensorEntry(name=name, dtype=dtype, shape=tuple(shape), begin=offsets[0], end=offsets[1])
    expected = math.prod(entry.shape) * DTYPES[dtype].itemsize
    if entry.nbytes != expected:
        raise FormatError(
            f"{dtype} x shape {list(entry.shape)} needs {expected} bytes but data_offsets span {entry.nbytes}",
            file=file,
            tensor=name,
        )
    return entry


def _int_list(value: object, field: str, name: str, file: Path) -> list[int]:
    # `bool` is an `int` subclass in Python; JSON `true` is not a dimension.
    if not isinstance(value, list) or not all(type(item) is int and item >= 0 for item in value):
        raise FormatError(
            f"{field} must be a list of non-negative integers, not {value!r}", file=file, tensor=name
        )
    return value


def _check_tiling(entries: list[TensorEntry], data_size: int, file: Path) -> None:
    """Checks that the tensors cover the data section exactly: in bounds, no overlap, no gap."""
    for entry in entries:
        if entry.end > data_size:
            raise FormatError(
                f"data_offsets [{entry.begin}, {entry.end}] run past the {data_size}-byte data section: "
                "the file is truncated or corrupt",
                file=file,
                tensor=entry.name,
            )
    position, previous = 0, None
    for entry in sorted(entries, key=lambda item: (item.begin, item.end)):
        if entry.begin < position:
            raise FormatError(
                f"data_offsets [{entry.begin}, {entry.end}] overlap tensor {previous!r}",
                file=file,
                tensor=entry.name,
            )
        if entry.begin > position:
            raise FormatError(
                f"gap of {entry.begin - position} unused bytes before this tensor's data",
                file=file,
                tensor=entry.name,
            )
        position, previous = entry.end, entry.name
    if position != data_size:
        raise FormatError(
            f"the tensors cover {position} bytes but the data section holds {data_size}: trailing bytes",
            file=file,
        )


def encode_header(entries: Sequence[TensorEntry], metadata: Mapping[str, str]) -> bytes:
    """Encodes a header deterministically, length prefix included.

    Tensors are written in the order given (the writer sorts them), metadata keys sorted, compact
    JSON with fixed separators, padded with spaces so the data section starts 8-byte aligned.

    Args:
        entries: The tensors, with their offsets.
        metadata: The `__metadata__` map; omitted from the header when empty.

    Returns:
        The 8-byte length followed by the padded JSON header.
    """
    document: dict[str, object] = {}
    if metadata:
        document[METADATA_KEY] = {key: metadata[key] for key in sorted(metadata)}
    for entry in entries:
        document[entry.name] = {
            "dtype": entry.dtype,
            "shape": list(entry.shape),
            "data_offsets": [entry.begin, entry.end],
        }
    raw = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw


__all__ = [
    "DTYPES",
    "DTYPE_NAMES",
    "MAX_HEADER_BYTES",
    "METADATA_KEY",
    "SafetensorsHeader",
    "TensorEntry",
    "encode_header",
    "loads_strict_json",
    "parse_header",
    "read_header",
]

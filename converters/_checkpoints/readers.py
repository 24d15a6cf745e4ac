"""Safe checkpoint readers: one interface over safetensors, sharded safetensors and torch pickles.

Readers list names, shapes and dtypes from the header alone and load one tensor at a time, so a
conversion holds about one tensor in memory. Nothing here ever unpickles code: pickles are read
with `torch.load(weights_only=True)` and a refusal is final.
"""

from __future__ import annotations

import abc
import math
import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path, PureWindowsPath
from types import TracebackType
from typing import Any, Self

import torch

from converters._checkpoints.detect import CheckpointFormat, detect_format, find_shard_index
from converters._checkpoints.mapped import MappedFile
from converters._checkpoints.safetensors_header import (
    SafetensorsHeader,
    TensorEntry,
    loads_strict_json,
    read_header,
)
from zoo.errors import FormatError

_SHOWN_NAMES = 10
_TRUSTED_TOOL_HINT = "convert it to safetensors with a trusted tool, in a sandbox"
_WRAPPERS = ("state_dict", "model")  # entries of a saved dict that hold the state dict, in this order


class CheckpointReader(abc.ABC):
    """Reads tensors from a checkpoint one at a time; use as a context manager.

    Attributes:
        path: The path the reader was opened with.
        format: The detected format.
    """

    def __init__(self, path: Path, format: CheckpointFormat) -> None:
        self.path = path
        self.format: CheckpointFormat = format

    @abc.abstractmethod
    def keys(self) -> list[str]:
        """Returns the tensor names, sorted."""

    @abc.abstractmethod
    def shape(self, key: str) -> tuple[int, ...]:
        """Returns a tensor's shape without loading it."""

    @abc.abstractmethod
    def dtype(self, key: str) -> torch.dtype:
        """Returns a tensor's dtype without loading it."""

    @abc.abstractmethod
    def get(self, key: str) -> torch.Tensor:
        """Loads one tensor (on CPU)."""

    @property
    def metadata(self) -> dict[str, str]:
        """The checkpoint's string metadata (safetensors `__metadata__`); empty for pickles."""
        return {}

    def nbytes(self, key: str) -> int:
        """Returns the size of a tensor's data in bytes, without loading it."""
        return math.prod(self.shape(key)) * self.dtype(key).itemsize

    @abc.abstractmethod
    def close(self) -> None:
        """Releases open files and mappings; tensors already returned stay valid."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def _missing(self, key: str) -> KeyError:
        return KeyError(f"{key!r} is not a tensor of {self.path}")


def open_checkpoint(path: str | os.PathLike[str]) -> CheckpointReader:
    """Opens a checkpoint, detecting its format from its content and validating it.

    Args:
        path: A `.safetensors` file, a torch pickle (zip or legacy), a shard index
            (`*.safetensors.index.json`) or a folder holding one.

    Returns:
        A reader; use it as a context manager.

    Raises:
        FormatError: The file is not a checkpoint, is malformed, or asks to run code.
    """
    file = Path(path)
    format = detect_format(file)
    if format == "safetensors":
        return SafetensorsReader(file)
    if format == "sharded-safetensors":
        return ShardedSafetensorsReader(file)
    return PickleReader(file, format)


class SafetensorsReader(CheckpointReader):
    """A single safetensors file, validated by our own header parser; tensors are views of its mapping.

    `get` reads nothing: the bytes are read when the tensor is used, or streamed file to file by the
    writer when the tensor reaches it unchanged (`converters._checkpoints.mapped.locate`).
    """

    def __init__(self, path: Path) -> None:
        super().__init__(path, "safetensors")
        self.header: SafetensorsHeader = read_header(path)
        self._mapped = MappedFile(path)

    def keys(self) -> list[str]:
        return sorted(self.header.entries)

    def shape(self, key: str) -> tuple[int, ...]:
        return self._entry(key).shape

    def dtype(self, key: str) -> torch.dtype:
        return self._entry(key).torch_dtype

    def nbytes(self, key: str) -> int:
        return self._entry(key).nbytes

    @property
    def metadata(self) -> dict[str, str]:
        return dict(self.header.metadata)

    def get(self, key: str) -> torch.Tensor:
        entry = self._entry(key)
        try:
            return self._mapped.tensor(self.header.data_start + entry.begin, entry.torch_dtype, entry.shape)
        except (ValueError, OSError) as error:
            # Our validation passed, so the file changed underneath us.
            raise FormatError(f"could not map this tensor: {error}", file=self.path, tensor=key) from None

    def close(self) -> None:
        self._mapped.close()

    def _entry(self, key: str) -> TensorEntry:
        try:
            return self.header.entries[key]
        except KeyError:
            raise self._missing(key) from None


class ShardedSafetensorsReader(CheckpointReader):
    """Several safetensors shards tied together by a `*.safetensors.index.json` `weight_map`."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, "sharded-safetensors")
        self.index = find_shard_index(path) if path.is_dir() else path
        weight_map = _read_weight_map(self.index)
        self._shards = {shard: SafetensorsReader(shard) for shard in sorted(set(weight_map.values()))}
        _check_shard_contents(self.index, weight_map, self._shards)
        self._owners = {key: self._shards[shard] for key, shard in weight_map.items()}
        self._metadata = _merge_metadata(self.index, self._shards)

    def keys(self) -> list[str]:
        return sorted(self._owners)

    def shape(self, key: str) -> tuple[int, ...]:
        return self._owner(key).shape(key)

    def dtype(self, key: str) -> torch.dtype:
        return self._owner(key).dtype(key)

    def nbytes(self, key: str) -> int:
        return self._owner(key).nbytes(key)

    def get(self, key: str) -> torch.Tensor:
        return self._owner(key).get(key)

    @property
    def metadata(self) -> dict[str, str]:
        return dict(self._metadata)

    def close(self) -> None:
        for shard in self._shards.values():
            shard.close()

    def _owner(self, key: str) -> SafetensorsReader:
        try:
            return self._owners[key]
        except KeyError:
            raise self._missing(key) from None


def _read_weight_map(index: Path) -> dict[str, Path]:
    """Reads an index's `weight_map`, resolving each shard to a file inside the index's folder."""
    document = loads_strict_json(index.read_bytes(), file=index, name_depth=1, what="shard index")
    weight_map = document.get("weight_map") if isinstance(document, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(shard, str) for shard in weight_map.values()):
        raise FormatError(
            "shard index has no 'weight_map' object mapping tensor names to file names", file=index
        )
    if not weight_map:
        raise FormatError("shard index has an empty weight_map", file=index)
    return {key: _shard_path(index, shard, key) for key, shard in weight_map.items()}


def _shard_path(index: Path, shard: str, tensor: str) -> Path:
    folder = index.parent.resolve()
    # PureWindowsPath splits on both separators, so it catches `..\x` and `C:x` as well as `/x`.
    windows = PureWindowsPath(shard)
    path = (folder / shard).resolve()
    if not shard or windows.drive or windows.root or ".." in windows.parts or not path.is_relative_to(folder):
        raise FormatError(
            f"shard path {shard!r} points outside the checkpoint folder",
            file=index,
            tensor=tensor,
            hint=_TRUSTED_TOOL_HINT,
        )
    if not path.is_file():
        raise FormatError(f"shard {shard!r} listed in weight_map is missing", file=index, tensor=tensor)
    return path


def _check_shard_contents(
    index: Path, weight_map: Mapping[str, Path], shards: Mapping[Path, SafetensorsReader]
) -> None:
    """Checks that weight_map and the shards' headers agree tensor for tensor."""
    stored_in: dict[str, Path] = {}
    for shard, reader in shards.items():
        for key in reader.keys():
            if key in stored_in:
                raise FormatError(
                    f"tensor is stored in two shards: {stored_in[key].name} and {shard.name}",
                    file=index,
                    tensor=key,
                )
            stored_in[key] = shard
            if weight_map.get(key) != shard:
                listed = weight_map[key].name if key in weight_map else "nowhere"
                raise FormatError(
                    f"shard {shard.name} holds this tensor but weight_map lists it in {listed}",
                    file=index,
                    tensor=key,
                )
    for key, shard in weight_map.items():
        if key not in stored_in:
            raise FormatError(
                f"weight_map lists this tensor in {shard.name}, which does not hold it",
                file=index,
                tensor=key,
            )


def _merge_metadata(index: Path, shards: Mapping[Path, SafetensorsReader]) -> dict[str, str]:
    merged: dict[str, str] = {}
    for shard, reader in shards.items():
        for key, value in reader.metadata.items():
            if merged.setdefault(key, value) != value:
                raise FormatError(
                    f"shards disagree on metadata {key!r} ({shard.name} says {value!r})", file=index
                )
    return merged


class PickleReader(CheckpointReader):
    """A torch pickle, loaded with `weights_only=True` (and memory-mapped for the zip format)."""

    def __init__(self, path: Path, format: CheckpointFormat) -> None:
        super().__init__(path, format)
        loaded = _load_weights_only(path, mmap=format == "pickle-zip")
        self._tensors = _state_dict(loaded, path)

    def keys(self) -> list[str]:
        return sorted(self._tensors)

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._tensor(key).shape)

    def dtype(self, key: str) -> torch.dtype:
        return self._tensor(key).dtype

    def get(self, key: str) -> torch.Tensor:
        return self._tensor(key)

    def close(self) -> None:
        self._tensors = {}

    def _tensor(self, key: str) -> torch.Tensor:
        try:
            return self._tensors[key]
        except KeyError:
            raise self._missing(key) from None


def _load_weights_only(path: Path, *, mmap: bool) -> Any:
    """Loads a pickle with `weights_only=True`; there is deliberately no fallback."""
    try:
        return torch.load(path, weights_only=True, mmap=mmap, map_location="cpu")
    except pickle.UnpicklingError as error:
        raise _unpickling_error(str(error), path) from None
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile) as error:
        raise FormatError(f"cannot read this PyTorch checkpoint: {error}", file=path) from None


def _unpickling_error(message: str, path: Path) -> FormatError:
    # torch's message explains how to disable the protection; we keep only what the file asked for.
    forbidden = re.search(r"Unsupported (?:global|operand)[^\n.]*", message)
    if forbidden:
        return FormatError(
            f"refusing to unpickle code: the file asks for something other than tensors ({forbidden.group(0)})",
            file=path,
            hint=_TRUSTED_TOOL_HINT,
        )
    detail = re.search(r"WeightsUnpickler error: ([^\n]*)", message)
    return FormatError(
        f"cannot unpickle this checkpoint: {detail.group(1) if detail else message}", file=path
    )


def _state_dict(loaded: Any, path: Path) -> dict[str, torch.Tensor]:
    """Finds the state dict in a loaded pickle: the object itself or its `"state_dict"` or `"model"` entry."""
    # Lightning and the original LDM/SGM code save {"state_dict": {...}, "epoch": ..., ...}; many research
    # releases of vision models save {"model": {...}} (with the optimizer's state in training checkpoints).
    wrapper = next(
        (key for key in _WRAPPERS if isinstance(loaded, Mapping) and isinstance(loaded.get(key), Mapping)),
        None,
    )
    if wrapper is not None:
        loaded = loaded[wrapper]
    if not isinstance(loaded, Mapping):
        raise FormatError(f"this checkpoint holds a {type(loaded).__name__}, not a state dict", file=path)
    loaded = _flattened(loaded, path)
    others = [
        f"{key!r} ({type(value).__name__})"
        for key, value in loaded.items()
        if not _is_tensor_entry(key, value)
    ]
    if others:
        shown = ", ".join(others[:_SHOWN_NAMES]) + (
            f" and {len(others) - _SHOWN_NAMES} more" if len(others) > _SHOWN_NAMES else ""
        )
        raise FormatError(
            f"the state dict holds {len(others)} entries that are not named tensors: {shown}",
            file=path,
            hint="extract the tensors into a flat {name: tensor} dict and save that",
        )
    # Parameters become plain tensors so every reader returns the same type.
    return {key: value.detach() for key, value in loaded.items()}


def _flattened(loaded: Mapping[Any, Any], path: Path) -> dict[Any, Any]:
    """Nested state dicts become dotted names, as the same weights' safetensors files name them.

    Some releases pickle a dict of state dicts (IP-Adapter's `{"image_proj": {...}, "ip_adapter": {...}}`);
    only mappings holding nothing but tensors (at any depth) are flattened, anything else stays to be refused.
    """
    flat: dict[Any, Any] = {}
    for key, value in loaded.items():
        inner = _flattened(value, path).items() if _is_tensor_tree(value) else [("", value)]
        for name, leaf in inner:
            full = f"{key}.{name}" if name else key
            if full in flat:
                raise FormatError(
                    "two entries of the nested state dict have the same name", file=path, tensor=full
                )
            flat[full] = leaf
    return flat


def _is_tensor_tree(value: object) -> bool:
    if not isinstance(value, Mapping) or not value:
        return False
    return all(
        isinstance(key, str) and (isinstance(leaf, torch.Tensor) or _is_tensor_tree(leaf))
        for key, leaf in value.items()  # pyright: ignore[reportUnknownVariableType]
    )


def _is_tensor_entry(key: object, value: object) -> bool:
    return isinstance(key, str) and isinstance(value, torch.Tensor)


__all__ = [
    "CheckpointReader",
    "PickleReader",
    "SafetensorsReader",
    "ShardedSafetensorsReader",
    "open_checkpoint",
]

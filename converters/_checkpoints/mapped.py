"""Files mapped into memory: tensors as views of a file, and the way back from a view to the file's bytes.

A reader hands out tensors that are views of a copy-on-write mapping of the file, so making one reads
nothing. The writer asks `locate` whether a tensor it is given is still such a view (contiguous, never
changed in place): then its bytes are a byte range of the source file, which the writer streams file to
file in chunks without torch ever reading the tensor.

Only mappings alive right now are searched, so an address can never be matched to a file mapped earlier.
"""

from __future__ import annotations

import math
import mmap
import os
import warnings
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from zoo.errors import FormatError
from zoo.files import map_read_only

# Pages a mapping has served stay resident: re-mapping after this many bytes bounds the reader's RSS
# (tensors already handed out keep their own mapping alive). Measured on the 5.1 GB SDXL UNet with
# safetensors' own reader: 5.68 GB peak RSS with one mapping, 0.85 GB re-mapping every 256 MB.
REMAP_AFTER_BYTES = 256 * 1024 * 1024


class SourceFile:
    """An open file whose bytes tensors may be views of; its descriptor lives as long as this object."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDONLY)
        self.size = os.fstat(self.fd).st_size
        weakref.finalize(self, os.close, self.fd)

    def chunks(self, offset: int, nbytes: int, chunk_bytes: int) -> Iterator[memoryview]:
        """The bytes `[offset, offset + nbytes)`, as read-only views of short-lived mappings.

        Each chunk's pages are read in (MAP_POPULATE) when it is mapped, here, and released when the
        last view of it is dropped: the memory held is a few chunks, whatever the file's size.
        """
        end = offset + nbytes
        if end > self.size:
            raise FormatError(
                f"the file is shorter than when it was opened ({self.size} bytes)", file=self.path
            )
        for start in range(offset, end, chunk_bytes):
            yield self._map(start, min(chunk_bytes, end - start))

    def _map(self, start: int, length: int) -> memoryview:
        aligned = start - start % mmap.ALLOCATIONGRANULARITY
        mapping = map_read_only(self.fd, aligned, start - aligned + length)
        return memoryview(mapping)[start - aligned :]


def read_only_tensor(chunk: memoryview, dtype: torch.dtype) -> torch.Tensor:
    """A tensor viewing a read-only chunk, to read values from (writing to it would fault)."""
    with warnings.catch_warnings():
        # torch warns, once, that it cannot mark a tensor read-only; this one is only ever read.
        warnings.simplefilter("ignore", UserWarning)
        return torch.frombuffer(chunk, dtype=dtype)


@dataclass(frozen=True)
class FileSpan:
    """A contiguous byte range of a source file: the exact bytes of some tensor."""

    file: SourceFile
    offset: int
    nbytes: int

    def chunks(self, chunk_bytes: int) -> Iterator[memoryview]:
        return self.file.chunks(self.offset, self.nbytes, chunk_bytes)


@dataclass(frozen=True)
class _Region:
    source: SourceFile
    base: int  # the mapping's address
    size: int


_live: dict[int, _Region] = {}  # id(mapping) -> where it is; entries leave when the mapping is freed


class MappedFile:
    """A file mapped copy-on-write; `tensor` makes views of it (reading nothing), re-mapping now and then."""

    def __init__(self, path: Path) -> None:
        self.source = SourceFile(path)
        self._mapping: mmap.mmap | None = None
        self._served = 0

    def tensor(self, offset: int, dtype: torch.dtype, shape: tuple[int, ...]) -> torch.Tensor:
        """The tensor of `dtype` and `shape` whose bytes start at `offset` in the file."""
        count = math.prod(shape)
        if count == 0:
            return torch.empty(shape, dtype=dtype)
        mapping = self._current(count * dtype.itemsize)
        return torch.frombuffer(mapping, dtype=dtype, count=count, offset=offset).reshape(shape)

    def close(self) -> None:
        """Stop serving; tensors already handed out stay valid (they keep their mapping alive)."""
        self._mapping = None

    def _current(self, nbytes: int) -> mmap.mmap:
        if self._mapping is None or self._served >= REMAP_AFTER_BYTES:
            self._mapping = _map_whole(self.source)
            self._served = 0
        self._served += nbytes
        return self._mapping


def _map_whole(source: SourceFile) -> mmap.mmap:
    # Copy-on-write, as torch's own file storages: a tensor changed in place changes this process's
    # copy only, never the file (and `locate` then refuses it, by its version counter).
    mapping = mmap.mmap(source.fd, 0, access=mmap.ACCESS_COPY)
    base = torch.frombuffer(mapping, dtype=torch.uint8, count=1).data_ptr()
    key = id(mapping)
    _live[key] = _Region(source, base, source.size)
    weakref.finalize(mapping, _live.pop, key, None)
    return mapping


def locate(tensor: torch.Tensor) -> FileSpan | None:
    """The file bytes `tensor` is an unchanged, contiguous view of; None for any other tensor."""
    if not _plain_cpu_view(tensor):
        return None
    start, nbytes = tensor.data_ptr(), tensor.numel() * tensor.element_size()
    for region in list(_live.values()):
        if region.base <= start and start + nbytes <= region.base + region.size:
            return FileSpan(region.source, start - region.base, nbytes)
    return None


def _plain_cpu_view(tensor: torch.Tensor) -> bool:
    # A conjugate or negative view has the file's bytes but other values; `_version` counts in-place
    # changes of the tensor and every view sharing its storage.
    return (
        tensor.device.type == "cpu"
        and tensor.numel() > 0
        and tensor.is_contiguous()
        and not tensor.is_conj()
        and not tensor.is_neg()
        and tensor._version == 0
        and type(tensor) is torch.Tensor
    )


__all__ = ["REMAP_AFTER_BYTES", "FileSpan", "MappedFile", "SourceFile", "locate", "read_only_tensor"]

"""A streaming, deterministic, atomic safetensors writer: one pass over the bytes.

The header is computed from the plans alone, so tensors can be produced and written one at a time
in sorted-name order: peak memory is about one tensor (a few chunks for tensors copied from a source
file), whatever the model's size. The same plans give the same bytes on any machine (no timestamps,
sorted keys, fixed JSON formatting). Each source byte is read once and each output byte written once:
the value checks, the sha256 and the write all work on the same chunk, on different threads. The file
appears under its final name only once complete (an atomic rename), and, with `durable=True`, once its
bytes are on the disk too (fsync). Durability is opt-in: waiting for the disk doubles the time of a
large conversion on a disk that writes 0.5-0.6 GB/s, and the manifest's sha256 catches a file a crash
cut short (`zoo verify`).
"""

from __future__ import annotations

import itertools
import math
import os
import secrets
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from converters._checkpoints.mapped import FileSpan, locate, read_only_tensor
from converters._checkpoints.output_stream import OutputStream, Piece
from converters._checkpoints.safetensors_header import DTYPE_NAMES, METADATA_KEY, TensorEntry, encode_header
from converters._checkpoints.stages import StageClock
from converters._checkpoints.values import ValueCheck
from zoo.errors import CoverageError, FormatError
from zoo.files import fsync_folder

# Source bytes are read, checked, hashed and written this many at a time (a multiple of every itemsize).
CHUNK_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class TensorPlan:
    """One tensor to write, described before it exists.

    Attributes:
        name: The tensor's key in the output file.
        shape: Its shape; the produced tensor must match it.
        dtype: The dtype to write.
        produce: Returns the tensor, possibly in another dtype (it is cast to `dtype`) or on
            another device. Called once, when the tensor's turn comes.
    """

    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    produce: Callable[[], torch.Tensor]


@dataclass(frozen=True)
class WriteSummary:
    """What `write_safetensors` wrote.

    Attributes:
        path: The output file.
        tensor_count: Number of tensors.
        byte_count: Size of the file in bytes.
        param_count: Total number of values over all tensors.
        sha256: Hex sha256 of the whole file, computed while writing.
        dtypes: Number of tensors per safetensors dtype name (`{"F16": 1680}`), sorted by name.
        seconds: Busy seconds per stage (`converters._checkpoints.stages.STAGES`) and `wall`, the
            whole write; not part of the comparison of two summaries.
        copied_tensors: How many tensors were streamed file to file, their source bytes unchanged.
    """

    path: Path
    tensor_count: int
    byte_count: int
    param_count: int
    sha256: str
    dtypes: dict[str, int]
    seconds: dict[str, float] = field(default_factory=dict[str, float], compare=False)
    copied_tensors: int = field(default=0, compare=False)


def write_safetensors(
    path: str | os.PathLike[str],
    plans: Sequence[TensorPlan],
    metadata: Mapping[str, str] | None = None,
    *,
    allow_nonfinite: bool = False,
    progress: Callable[[int], None] | None = None,
    durable: bool = False,
) -> WriteSummary:
    """Writes tensors to a safetensors file, in one pass, deterministically and atomically.

    A produced tensor that is an unchanged view of a source file's bytes (what the checkpoint readers
    return, reshaped or cut along its first dimension) is streamed from that file in chunks, cast chunk
    by chunk when its dtype changes; any other tensor is made whole, then written. Either way the
    values are checked, and the bytes hashed and written, on other threads while the next are read.

    Args:
        path: The output file. Its folder must exist; an existing file is replaced only on success.
        plans: The tensors to write, in any order; they are written sorted by name.
        metadata: String metadata for the header's `__metadata__`.
        allow_nonfinite: Accept NaN and Inf in the produced tensors.
        progress: Called after each tensor with the number of bytes just written (fits
            `tqdm.update`).
        durable: fsync the file (in the background while writing, and at the end) and its folder
            before returning, so it survives a crash of the machine.

    Returns:
        A summary of the written file.

    Raises:
        CoverageError: Two plans share a name.
        FormatError: A plan or the metadata cannot be written as safetensors, or a produced tensor
            does not match its plan.
        TensorValueError: A produced tensor holds NaN/Inf, or a value its target dtype cannot hold.
    """
    started = time.perf_counter()
    target = Path(path)
    ordered = _sorted_plans(plans, target)
    entries = _layout(ordered)
    header = encode_header(entries, _checked_metadata(metadata, target))
    clock, copied = StageClock(), 0
    with (
        _single_intraop_thread(),
        _atomic_file(target, clock, durable) as fd,
        OutputStream(fd, clock, durable) as stream,
    ):
        stream.put(Piece(memoryview(header)))
        for plan in ordered:
            copied += _write_tensor(plan, stream, clock, allow_nonfinite=allow_nonfinite, file=target)
            if progress is not None:
                progress(math.prod(plan.shape) * plan.dtype.itemsize)
        sha256 = stream.finish()
        # Cheap insurance that the data matches the header computed before it.
        if stream.count != len(header) + (entries[-1].end if entries else 0):
            raise RuntimeError(f"internal error: wrote {stream.count} bytes, the header promised otherwise")
    return WriteSummary(
        path=target,
        tensor_count=len(entries),
        byte_count=stream.count,
        param_count=sum(math.prod(entry.shape) for entry in entries),
        sha256=sha256,
        dtypes=dict(sorted(Counter(entry.dtype for entry in entries).items())),
        seconds={**clock.rounded(), "wall": round(time.perf_counter() - started, 3)},
        copied_tensors=copied,
    )


@contextmanager
def _single_intraop_thread() -> Iterator[None]:
    """Run torch's value checks on one thread while the background writer uses the other core.

    With its default thread pool, torch's OpenMP workers spin between reductions and starve the
    writer/hasher thread: measured on the 2-core machine, 8.7 s of CPU for a 1.6 GB file instead of 4.0 s.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _write_tensor(
    plan: TensorPlan, stream: OutputStream, clock: StageClock, *, allow_nonfinite: bool, file: Path
) -> int:
    """Streams one plan's tensor; returns 1 when it was copied from its source file, else 0."""
    with clock.timed("transform"):
        tensor = _produced(plan, file)
    check = ValueCheck(plan.name, plan.dtype, allow_nonfinite=allow_nonfinite, file=file)
    span = locate(tensor)
    if span is None:
        _stream_tensor(tensor, plan.dtype, check, stream, clock)
        return 0
    _stream_span(span, tensor.dtype, plan.dtype, check, stream, clock)
    return 1


def _stream_tensor(
    tensor: torch.Tensor, dtype: torch.dtype, check: ValueCheck, stream: OutputStream, clock: StageClock
) -> None:
    """A tensor made in memory: checked whole, cast, then handed to the stream."""
    with clock.timed("check"):
        check.update(tensor)
        check.finish()
    with clock.timed("transform"):
        data = _little_endian_bytes(tensor.detach().to(device="cpu", dtype=dtype).contiguous())
    stream.put(Piece(data))


def _stream_span(
    span: FileSpan,
    source_dtype: torch.dtype,
    dtype: torch.dtype,
    check: ValueCheck,
    stream: OutputStream,
    clock: StageClock,
) -> None:
    """A tensor that is a source file's bytes: read, checked and (if its dtype changes) cast chunk by chunk."""
    for offset, chunk in _chunks(span, clock):
        values = read_only_tensor(chunk, source_dtype)
        with clock.timed("check"):
            check.update(values)
        if source_dtype == dtype:
            piece = Piece(chunk, (span.file.fd, offset))
        else:
            with clock.timed("transform"):
                piece = Piece(_little_endian_bytes(values.to(dtype)))
        stream.put(piece)
    check.finish()


def _chunks(span: FileSpan, clock: StageClock) -> Iterator[tuple[int, memoryview]]:
    """The span's chunks with their offsets in the file; mapping one (its pages read in) is the read."""
    chunks, offset = span.chunks(CHUNK_BYTES), span.offset
    while True:
        with clock.timed("read"):
            chunk = next(chunks, None)
        if chunk is None:
            return
        yield offset, chunk
        offset += chunk.nbytes


def _sorted_plans(plans: Sequence[TensorPlan], file: Path) -> list[TensorPlan]:
    ordered = sorted(plans, key=lambda plan: plan.name)
    for previous, plan in itertools.pairwise(ordered):
        if plan.name == previous.name:
            raise CoverageError("two tensor plans share this name", file=file, tensor=plan.name)
    for plan in ordered:
        _check_plan(plan, file)
    return ordered


def _check_plan(plan: TensorPlan, file: Path) -> None:
    if not plan.name or plan.name == METADATA_KEY:
        raise FormatError(
            "tensor name is empty or reserved by the safetensors format", file=file, tensor=plan.name
        )
    if plan.dtype not in DTYPE_NAMES:
        raise FormatError(f"safetensors cannot hold dtype {plan.dtype}", file=file, tensor=plan.name)
    if not all(isinstance(size, int) and size >= 0 for size in plan.shape):
        raise FormatError(
            f"shape {plan.shape} is not a tuple of non-negative ints", file=file, tensor=plan.name
        )


def _layout(ordered: Sequence[TensorPlan]) -> list[TensorEntry]:
    """Places the tensors back to back in the data section, in the given order."""
    entries, offset = [], 0
    for plan in ordered:
        size = math.prod(plan.shape) * plan.dtype.itemsize
        entries.append(
            TensorEntry(plan.name, DTYPE_NAMES[plan.dtype], tuple(plan.shape), offset, offset + size)
        )
        offset += size
    return entries


def _checked_metadata(metadata: Mapping[str, str] | None, file: Path) -> dict[str, str]:
    for key, value in (metadata or {}).items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise FormatError(
                f"metadata {key!r}: {value!r} is not str → str, as safetensors requires", file=file
            )
    return dict(metadata or {})


@contextmanager
def _atomic_file(target: Path, clock: StageClock, durable: bool) -> Iterator[int]:
    """Yields the descriptor of a temporary file next to `target` that replaces it only if the block succeeds.

    The temporary file lives in the target's folder so that `os.replace` is an atomic rename on the
    same file system. Its permissions are the usual ones (0666 less the umask; mkstemp's are 0600).
    """
    temporary = target.with_name(f".{target.name}.tmp-{secrets.token_hex(8)}")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        try:
            yield fd
            if durable:
                with clock.timed("fsync"):
                    os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    if durable:
        fsync_folder(target.parent)


def _produced(plan: TensorPlan, file: Path) -> torch.Tensor:
    """A plan's tensor, as produced, after checking it is a tensor of the planned shape."""
    tensor = plan.produce()
    if not isinstance(tensor, torch.Tensor):
        raise FormatError(
            f"produce() returned a {type(tensor).__name__}, not a tensor", file=file, tensor=plan.name
        )
    if tuple(tensor.shape) != tuple(plan.shape):
        raise FormatError(
            f"produced shape {tuple(tensor.shape)} but the plan says {plan.shape}",
            file=file,
            tensor=plan.name,
        )
    return tensor


def _little_endian_bytes(tensor: torch.Tensor) -> memoryview:
    if sys.byteorder != "little":
        # safetensors is little-endian; byte-swapping is not implemented for the rare big-endian host.
        raise NotImplementedError("zoo writes safetensors on little-endian machines only")
    # A uint8 view works for every dtype, bfloat16 included, which numpy cannot represent.
    return tensor.reshape(-1).view(torch.uint8).numpy().data


__all__ = ["TensorPlan", "WriteSummary", "write_safetensors"]

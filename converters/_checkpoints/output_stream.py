"""The output side of the writer: bytes reach the file and the sha256 on their own threads, in order.

The caller reads, checks and casts the next chunk while earlier ones are hashed and written: file writes,
sha256, mmap and torch's kernels all release the GIL, so the stages run on different cores. Measured on
the 2-core machine for the 5.1 GB SDXL UNet: hashing takes 3.3 s of one core, writing 2-4 s of system
time, and checking 0.6 s; one after the other they would add up.

Chunks of a source file (`Piece.source`) are copied file to file by the kernel (`copy_file_range`, a
reflink on file systems that share extents), falling back to writing the mapped bytes. When the output
must be durable, while writing, a flusher thread makes what is written durable every `FLUSH_EVERY` bytes, so the final fsync waits for
the last few hundred megabytes only instead of the whole file (measured for 5 GB: 7.6-8.4 s written and
fsynced, against 10.5-11 s with one fsync at the end).
"""

from __future__ import annotations

import errno
import hashlib
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

from converters._checkpoints.stages import StageClock

FLUSH_EVERY = 256 * 1024 * 1024
QUEUED_PIECES = 4  # per worker: with 8 MiB chunks, at most ~64 MiB waits for each of them
# copy_file_range's answers meaning "not between these two files": write the mapped bytes instead.
_NO_KERNEL_COPY = {errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EBADF, errno.EPERM}
_SYNC_DATA = getattr(os, "fdatasync", os.fsync)  # macOS and Windows have fsync only


@dataclass(frozen=True)
class Piece:
    """Bytes to append, and where they come from when they are a source file's bytes unchanged.

    Attributes:
        data: The bytes (a view; the source's mapping when `source` is set).
        source: (file descriptor, offset) of the same bytes in a source file, or None.
    """

    data: memoryview
    source: tuple[int, int] | None = None


class _Worker:
    """Applies `consume` to queued items, in order, on its own thread; its error surfaces in the caller."""

    _DONE = object()

    def __init__(self, consume: Callable[[Piece], object], name: str) -> None:
        self._consume = consume
        self._queue: queue.Queue[object] = queue.Queue(maxsize=QUEUED_PIECES)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not self._DONE:
            if self._error is None:
                try:
                    self._consume(item)  # pyright: ignore[reportArgumentType]
                except BaseException as error:  # handed to the caller's thread
                    self._error = error

    def put(self, item: object) -> None:
        self.raise_if_failed()
        self._queue.put(item)

    def offer(self, item: object) -> None:
        """Queue `item` unless the worker is already busy with enough (for work that may be skipped)."""
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            pass

    def stop(self) -> None:
        """Wait until everything queued is consumed."""
        if self._thread.is_alive():
            self._queue.put(self._DONE)
            self._thread.join()

    def raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error


class OutputStream:
    """Appends pieces to an open file and hashes them, each on its own thread; use as a context manager.

    Attributes:
        count: Bytes appended so far.
    """

    def __init__(self, fd: int, clock: StageClock, durable: bool = False) -> None:
        self._fd = fd
        self._clock = clock
        self._sha256 = hashlib.sha256()
        self._kernel_copy = hasattr(os, "copy_file_range")
        self._written = self._flushed = 0
        self.count = 0
        self._flusher = _Worker(self._flush, "zoo-fsync") if durable else None
        self._workers = (_Worker(self._hash, "zoo-hash"), _Worker(self._write, "zoo-write"))

    def __enter__(self) -> OutputStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for worker in self._all_workers():
            worker.stop()

    def _all_workers(self) -> tuple[_Worker, ...]:
        return (*self._workers, self._flusher) if self._flusher is not None else self._workers

    def put(self, piece: Piece) -> None:
        """Queue a piece for hashing and writing (blocks while the workers are a few pieces behind)."""
        self.count += piece.data.nbytes
        for worker in self._workers:
            worker.put(piece)

    def finish(self) -> str:
        """Wait for every queued piece; raise the first error a worker had; return the hex sha256."""
        for worker in self._all_workers():
            worker.stop()
        for worker in self._all_workers():
            worker.raise_if_failed()
        return self._sha256.hexdigest()

    def _hash(self, piece: Piece) -> None:
        with self._clock.timed("hash"):
            self._sha256.update(piece.data)

    def _write(self, piece: Piece) -> None:
        with self._clock.timed("write"):
            copied = (
                piece.source is not None and self._kernel_copy and self._copy(piece.source, piece.data.nbytes)
            )
            if not copied:
                _write_all(self._fd, piece.data)
        self._written += piece.data.nbytes
        if self._flusher is not None and self._written - self._flushed >= FLUSH_EVERY:
            self._flushed = self._written
            self._flusher.offer(None)

    def _copy(self, source: tuple[int, int], nbytes: int) -> bool:
        """Copy in the kernel; False (and never again) when it cannot copy between these files."""
        fd, offset = source
        done = 0
        try:
            while done < nbytes:
                copied = os.copy_file_range(fd, self._fd, nbytes - done, offset + done)
                if copied == 0:
                    raise OSError(errno.EIO, "copy_file_range copied nothing: the source is shorter")
                done += copied
        except OSError as error:
            if done or error.errno not in _NO_KERNEL_COPY:
                raise
            self._kernel_copy = False
            return False
        return True

    def _flush(self, _: object) -> None:
        with self._clock.timed("fsync"):
            _SYNC_DATA(self._fd)


def _write_all(fd: int, data: memoryview) -> None:
    while data.nbytes:  # a write may take only part of the data
        data = data[os.write(fd, data) :]


__all__ = ["FLUSH_EVERY", "OutputStream", "Piece"]

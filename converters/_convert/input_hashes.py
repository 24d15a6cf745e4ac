"""The sha256 of a run's source files, without a pass of their own.

A file of the HF cache is named by its sha256 (`zoo.hub.cached_blob_sha256`): nothing to read. Any other
file is hashed on a background thread started as soon as the run knows its sources, so the hashing
overlaps tracing and writing (sha256 releases the GIL) instead of following them: on the 2-core machine
the 5.1 GB SDXL UNet takes 3.3 s of one core to hash, which tracing alone (about 6 s) more than covers.
Each file is hashed once per run, however many conversions read it (an SDXL single file: four).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterable
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Self

from zoo.hub import FileHash, cached_blob_sha256, hash_file

READ_BYTES = 8 * 1024 * 1024


class InputHashes:
    """Hashes of source files, computed one file at a time on a background thread; a context manager."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zoo-source-hash")
        self._hashes: dict[str, Future[FileHash]] = {}
        self._stop = threading.Event()

    def start(self, paths: Iterable[Path]) -> None:
        """Begin hashing the files not asked for yet (in the given order)."""
        for path in paths:
            key = _key(path)
            if key not in self._hashes and Path(path).is_file() and not self._stop.is_set():
                self._hashes[key] = self._pool.submit(_hash, Path(path), self._stop)

    def get(self, path: Path) -> FileHash:
        """A file's hash, waiting for it if it is still being computed (and starting it if never asked)."""
        self.start([path])
        future = self._hashes.get(_key(path))
        try:
            return future.result() if future is not None else hash_file(Path(path))
        except CancelledError:  # asked after `close`
            return hash_file(Path(path))

    def close(self) -> None:
        """Stop at once: the file being hashed is abandoned, the others are never started."""
        self._stop.set()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


def _hash(path: Path, stop: threading.Event) -> FileHash:
    named = cached_blob_sha256(path)
    size = path.stat().st_size
    if named is not None:
        return FileHash(named, size, "hf-cache-blob-name")
    digest, buffer = hashlib.sha256(), bytearray(READ_BYTES)
    view = memoryview(buffer)
    with path.open("rb", buffering=0) as stream:
        while not stop.is_set() and (count := stream.readinto(buffer)):
            digest.update(view[:count])
    if stop.is_set():
        raise CancelledError(f"hashing {path} was stopped")
    return FileHash(digest.hexdigest(), size, "content")


def _key(path: Path) -> str:
    # The same file reached through two spellings of its path is hashed once; HF cache links are kept
    # apart from their blobs, as only the link names the sha256.
    return os.path.abspath(path)


__all__ = ["InputHashes"]

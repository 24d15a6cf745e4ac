"""The sha256 of a run's source files, without a pass of their own.

A file of the HF cache is named by its sha256 (`zoo.hub.cached_blob_sha256`): nothing to read. Any other
file is hashed on a background thread started as soon as the run knows its sources (`zoo convert`
starts it before importing torch when `--source` names the file), so the hashing overlaps the imports,
tracing and writing (sha256 releases the GIL) instead of following them: on the 2-core machine the
5.1 GB SDXL UNet takes 3.3 s of one core to hash.
Each file is hashed once per run, however many conversions read it (an SDXL single file: four), and
once at all while it stays the same file: its sha256 is cached by identity (device, inode, size, and
the modification and change times in nanoseconds: any write changes the change time, which no tool can
set back), so converting it again reads nothing to hash it. `zoo verify --hashes` always reads.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterable
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Self

from converters._convert.cache_location import cache_dir
from zoo.files import write_text_atomic
from zoo.hub import FileHash, cached_blob_sha256, hash_file, sha256_file

CACHE_KIND = "input_hashes"
# A file changed this recently may change again within the file system's clock tick, unseen by its
# times (git's "racily clean" case): its hash is not remembered.
RECENT_NS = 2_000_000_000
WEIGHT_SUFFIXES = frozenset({".safetensors", ".bin", ".ckpt", ".pt", ".pth"})


class InputHashes:
    """Hashes of source files, computed one file at a time on a background thread; a context manager.

    Light to import (no torch): the command line starts hashing a `--source` it can name before it
    imports the converters, so the hashing uses the core that the single-threaded imports leave idle.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zoo-source-hash")
        self._hashes: dict[str, Future[FileHash]] = {}
        self._stops: dict[str, threading.Event] = {}
        self._closed = False

    def start(self, paths: Iterable[Path]) -> None:
        """Begin hashing the files not asked for yet (in the given order)."""
        for path in paths:
            key = _key(path)
            if key not in self._hashes and Path(path).is_file() and not self._closed:
                self._stops[key] = threading.Event()
                self._hashes[key] = self._pool.submit(_hash, Path(path), self._stops[key])

    def keep_only(self, paths: Iterable[Path]) -> None:
        """Stop hashing (or never start) the files begun early that the run turned out not to read."""
        wanted = {_key(path) for path in paths}
        for key in [key for key in self._hashes if key not in wanted]:
            self._stops.pop(key).set()
            self._hashes.pop(key).cancel()

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
        self._closed = True
        for stop in self._stops.values():
            stop.set()
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
    remembered = _cache_entry(path)
    known = _read_cached(remembered)
    if known is not None:
        return FileHash(known, size, "content")
    try:
        sha256 = sha256_file(path, stop)
    except InterruptedError:
        raise CancelledError(f"hashing {path} was stopped") from None
    _remember(remembered, sha256)
    return FileHash(sha256, size, "content")


def weights_named_by(source: str) -> list[Path]:
    """The weights files a `--source` names beyond doubt, before any conversion is resolved.

    The file itself, or the only weights file of a component folder (one with a config.json); [] when
    it takes the conversion's declaration to know: a pipeline folder (whose top level may hold an
    original single file that a conversion of its components never reads), variants side by side,
    shards.
    """
    path = Path(source)
    if path.is_file():
        return [path]
    if not (path / "config.json").is_file():
        return []
    files = [entry for entry in path.iterdir() if entry.suffix in WEIGHT_SUFFIXES and entry.is_file()]
    return files if len(files) == 1 else []


def _cache_entry(path: Path) -> Path | None:
    """Where this file's sha256 is remembered, named by its identity; None when caching is off."""
    folder = cache_dir(CACHE_KIND)
    if folder is None:
        return None
    stat = path.stat()
    if time.time_ns() - stat.st_ctime_ns < RECENT_NS:
        return None
    identity = f"{stat.st_dev}:{stat.st_ino}:{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ctime_ns}:{os.path.abspath(path)}"
    return folder / hashlib.sha256(identity.encode()).hexdigest()


def _read_cached(entry: Path | None) -> str | None:
    try:
        text = entry.read_text(encoding="ascii").strip() if entry is not None else ""
    except (OSError, ValueError):
        return None
    return text if len(text) == 64 and all(c in "0123456789abcdef" for c in text) else None


def _remember(entry: Path | None, sha256: str) -> None:
    if entry is None:
        return
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(entry, sha256)
    except OSError:  # a cache that cannot be written is not an error
        return


def _key(path: Path) -> str:
    # The same file reached through two spellings of its path is hashed once; HF cache links are kept
    # apart from their blobs, as only the link names the sha256.
    return os.path.abspath(path)


__all__ = ["InputHashes", "weights_named_by"]

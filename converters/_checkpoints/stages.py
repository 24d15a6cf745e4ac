"""Where a write spends its time: seconds per stage, each stage measured on the thread that runs it.

The stages overlap (hashing and writing run beside reading and checking), so their sum exceeds the wall
time; what each one took shows which one a faster write has to shorten.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

# read: bytes of source tensors paged in; transform: producing tensors (recipes, key-map transforms) and
# casting them; check: NaN/Inf and range checks; hash: the output's sha256; write: into the file;
# fsync: making it durable (in the background while writing, and once at the end).
STAGES: tuple[str, ...] = ("read", "transform", "check", "hash", "write", "fsync")


class StageClock:
    """Accumulates busy seconds per stage; each stage is timed by one thread at a time."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = dict.fromkeys(STAGES, 0.0)

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] += time.perf_counter() - started

    def rounded(self) -> dict[str, float]:
        return {stage: round(seconds, 3) for stage, seconds in self.seconds.items()}


__all__ = ["STAGES", "StageClock"]

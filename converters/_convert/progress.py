"""What a run reports while it converts: to a terminal's progress bars, to a parent process, or to no one.

A run announces its components with an estimate of the bytes each will write (the size of the weights
it reads); each component, once planned, gives its exact bytes and tensors, then reports every tensor
written. Everything here is plain data, so the calls can cross a process boundary (`zoo convert --jobs`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


class RunProgress(Protocol):
    """Receives a run's progress; every method is called from the thread running the conversions."""

    def start_run(self, estimates: Mapping[str, int]) -> None:
        """The components about to be converted, each with the bytes it is expected to write."""
        ...

    def start_component(self, name: str, total_bytes: int, tensors: int) -> None:
        """A component's plan is known: it writes `total_bytes` in `tensors` tensors."""
        ...

    def advance(self, name: str, nbytes: int) -> None:
        """One more tensor of `name` is written: `nbytes` bytes."""
        ...

    def finish_component(self, name: str) -> None:
        """A component is done (or failed)."""
        ...


class ComponentProgress:
    """One component's view of a run's progress, as `convert_component` reports it."""

    def __init__(self, run: RunProgress, name: str) -> None:
        self._run, self._name = run, name

    def start(self, total_bytes: int, tensors: int) -> None:
        self._run.start_component(self._name, total_bytes, tensors)

    def advance(self, nbytes: int) -> None:
        self._run.advance(self._name, nbytes)

    def finish(self) -> None:
        self._run.finish_component(self._name)


__all__ = ["ComponentProgress", "RunProgress"]

"""Progress bars for `zoo convert`: one for the whole run, one per component being written.

Bars go to stderr, only when it is a terminal and never with `--json`, and only for work that lasts more
than a second (`tqdm`'s `delay`): a tiny conversion prints nothing but its table. Each bar shows bytes,
tensors, rate and time left; the run's total starts as an estimate (the weights read) and becomes exact
as each component's plan is known.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

SHOW_AFTER_SECONDS = 1.0
REDRAW_SECONDS = 0.1  # at most this often
RUN_LABEL = "all"


class TerminalProgress:
    """`converters._convert.progress.RunProgress` as tqdm bars on stderr (or nothing, when not shown)."""

    def __init__(self, enabled: bool) -> None:
        self._shown = enabled and sys.stderr.isatty()
        self._run: Any = None
        self._estimates: dict[str, int] = {}
        self._bars: dict[str, Any] = {}
        self._positions: dict[str, int] = {}  # a bar per line, under the run's
        self._tensors: dict[str, list[int]] = {RUN_LABEL: [0, 0]}  # label -> [written, planned]

    def start_run(self, estimates: Mapping[str, int]) -> None:
        self._estimates.update(estimates)
        if not self._shown:
            return
        if self._run is None:
            self._run = _bar(sum(estimates.values()), RUN_LABEL, 0)
        else:  # another job of the same command
            self._run.total += sum(estimates.values())

    def start_component(self, name: str, total_bytes: int, tensors: int) -> None:
        self._tensors[RUN_LABEL][1] += tensors
        self._tensors[name] = [0, tensors]
        if not self._shown:
            return
        self._run.total += total_bytes - self._estimates.pop(name, 0)  # the estimate gives way to the plan
        self._positions[name] = self._free_position()
        self._bars[name] = _bar(total_bytes, name, self._positions[name])

    def advance(self, name: str, nbytes: int) -> None:
        self._step(self._bars.get(name), name, nbytes)
        self._step(self._run, RUN_LABEL, nbytes)

    def finish_component(self, name: str) -> None:
        bar = self._bars.pop(name, None)
        self._positions.pop(name, None)
        if bar is not None:
            bar.close()

    def close(self) -> None:
        for name in list(self._bars):
            self.finish_component(name)
        if self._run is not None:
            self._run.close()
            self._run = None

    def _step(self, bar: Any, label: str, nbytes: int) -> None:
        counts = self._tensors.setdefault(label, [0, 0])
        counts[0] += 1
        if bar is not None:
            bar.set_postfix_str(f"{counts[0]}/{counts[1]} tensors", refresh=False)
            bar.update(nbytes)

    def _free_position(self) -> int:
        taken = set(self._positions.values())
        return next(position for position in range(1, len(taken) + 2) if position not in taken)


def _bar(total: int, label: str, position: int) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=label,
        unit="B",
        unit_scale=True,
        unit_divisor=1000,
        position=position,
        delay=SHOW_AFTER_SECONDS,
        mininterval=REDRAW_SECONDS,
        miniters=1,
        file=sys.stderr,
        leave=False,
        dynamic_ncols=True,
    )


__all__ = ["TerminalProgress"]

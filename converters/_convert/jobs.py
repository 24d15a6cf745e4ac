"""Several conversions in one command (`zoo convert A B C --jobs N`, `--all`): worker processes, a memory budget.

Each name is one job, `by_name.convert(name, ...)`, run in its own worker process (tracing is Python and
holds the GIL; processes convert side by side). Up to `jobs` run at once, and only while the memory they
may need fits the budget: a conversion streams, so it needs at most `STREAMING_PEAK_BYTES` (the imports,
the models on meta, a few chunks in flight), except one writing a full-size synthetic source, which builds
the upstream models for real and so runs alone. A failed job does not stop the others; the failures are
collected, each as the one-line message the command line would print.

Progress and report lines travel from the workers to the caller's `RunProgress` through a queue.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from converters import registry
from converters._convert.by_name import ConvertRun, convert
from converters._convert.progress import RunProgress
from zoo.errors import ConfigError, ZooError

STREAMING_PEAK_BYTES = 1_500_000_000
BUDGET_SHARE = 0.8  # of the memory available when the command starts, by default


@dataclass(frozen=True)
class JobFailure:
    """Why one job failed: the one-line message and hint the command line prints for it."""

    message: str
    hint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"message": self.message, "hint": self.hint}


@dataclass(frozen=True)
class ManyRuns:
    """The outcome of several conversions, by name as given."""

    runs: dict[str, ConvertRun] = field(default_factory=dict[str, ConvertRun])
    failures: dict[str, JobFailure] = field(default_factory=dict[str, JobFailure])

    def to_dict(self) -> dict[str, Any]:
        return {
            "runs": {name: run.to_dict() for name, run in self.runs.items()},
            "failures": {name: failure.to_dict() for name, failure in self.failures.items()},
        }


def declared_names() -> list[str]:
    """Every declared conversion's name (`--all`), variants included, in the registry's order."""
    return list(registry.all_conversions())


def convert_many(
    names: Sequence[str],
    *,
    jobs: int,
    memory_budget: int | None = None,
    progress: RunProgress | None = None,
    report: Callable[[str], None] | None = None,
    **options: Any,
) -> ManyRuns:
    """Convert each name (`by_name.convert(name, **options)`), up to `jobs` at once within `memory_budget`.

    Args:
        names: Families or conversions; no conversion may be named twice (by a family and by itself).
        jobs: How many conversions may run at once (1: one after the other, in this process).
        memory_budget: Bytes the running jobs may need together; default: `BUDGET_SHARE` of the
            memory available now. One job always runs, whatever it needs.
        progress: Receives every job's progress.
        report: Receives the jobs' report lines.
        options: The keyword arguments of `by_name.convert` (`out`, `synthetic`, `dtype`, ...).

    Raises:
        ConfigError: A name is unknown, or two names cover the same conversion.
    """
    _check_disjoint(names)
    budget = memory_budget if memory_budget is not None else int(available_memory() * BUDGET_SHARE)
    needs = {name: _memory_need(options, budget) for name in names}
    if jobs <= 1:
        return _in_process(names, progress, report, options)
    with _worker_pool(jobs, progress, report) as pool:
        outcome = _scheduled(pool, names, needs, jobs, budget, options)
    return _in_order(outcome, names)


def available_memory() -> int:
    """Bytes of memory available now (Linux `MemAvailable`; elsewhere half the physical memory)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2


def _check_disjoint(names: Sequence[str]) -> None:
    named_by: dict[str, str] = {}
    for name in names:
        for conversion in registry.resolve(name):
            if conversion.name in named_by:
                raise ConfigError(
                    f"{conversion.name} is named twice (by {named_by[conversion.name]} and by {name})",
                    hint="name each conversion once",
                )
            named_by[conversion.name] = name


def _memory_need(options: Mapping[str, Any], budget: int) -> int:
    # A full-size synthetic source is built in memory (the SDXL UNet alone is 10 GB in float32).
    return budget if options.get("synthetic") == "full" else STREAMING_PEAK_BYTES


# -- one after the other ----------------------------------------------------------------------------


def _in_process(
    names: Sequence[str],
    progress: RunProgress | None,
    report: Callable[[str], None] | None,
    options: Mapping[str, Any],
) -> ManyRuns:
    outcome = ManyRuns()
    for name in names:
        result = _attempt(name, {**options, "progress": progress, "report": report})
        _record(outcome, name, result)
    return outcome


def _attempt(name: str, options: Mapping[str, Any]) -> ConvertRun | JobFailure:
    try:
        return convert(name, **options)
    except ZooError as error:
        return JobFailure(error.one_line(), error.hint)
    except Exception as error:  # a bug: keep the others going, and say where it came from
        return JobFailure(f"{type(error).__name__}: {error}", _debug_trace())


def _debug_trace() -> str | None:
    return traceback.format_exc() if os.environ.get("ZOO_DEBUG") else None


def _in_order(outcome: ManyRuns, names: Sequence[str]) -> ManyRuns:
    """The same outcome, in the order the names were given rather than the order the jobs ended."""
    return ManyRuns(
        {name: outcome.runs[name] for name in names if name in outcome.runs},
        {name: outcome.failures[name] for name in names if name in outcome.failures},
    )


def _record(outcome: ManyRuns, name: str, result: ConvertRun | JobFailure) -> None:
    if isinstance(result, JobFailure):
        outcome.failures[name] = result
    else:
        outcome.runs[name] = result


# -- in worker processes ----------------------------------------------------------------------------

_events: Any = None  # in a worker: the queue its progress and reports go to


class _ForwardedProgress:
    """A worker's `RunProgress`: every call becomes an event for the parent."""

    def start_run(self, estimates: Mapping[str, int]) -> None:
        _events.put(("start_run", dict(estimates)))

    def start_component(self, name: str, total_bytes: int, tensors: int) -> None:
        _events.put(("start_component", name, total_bytes, tensors))

    def advance(self, name: str, nbytes: int) -> None:
        _events.put(("advance", name, nbytes))

    def finish_component(self, name: str) -> None:
        _events.put(("finish_component", name))


def _init_worker(events: Any) -> None:
    global _events
    _events = events


def _forward_report(line: str) -> None:
    _events.put(("report", line))


def _run_job(name: str, options: Mapping[str, Any]) -> ConvertRun | JobFailure:
    return _attempt(name, {**options, "progress": _ForwardedProgress(), "report": _forward_report})


@contextmanager
def _worker_pool(
    jobs: int, progress: RunProgress | None, report: Callable[[str], None] | None
) -> Iterator[ProcessPoolExecutor]:
    """Worker processes, and a thread relaying their events.

    Spawned, not forked: this process already runs threads (torch's pools, ours), which a fork would
    copy in whatever state they are.
    """
    context = multiprocessing.get_context("spawn")
    events = context.Queue()
    relay = threading.Thread(target=_relay, args=(events, progress, report), name="zoo-job-events")
    relay.start()
    try:
        with ProcessPoolExecutor(
            jobs, mp_context=context, initializer=_init_worker, initargs=(events,)
        ) as pool:
            yield pool
    finally:
        events.put(None)
        relay.join()


def _relay(events: Any, progress: RunProgress | None, report: Callable[[str], None] | None) -> None:
    while (event := events.get()) is not None:
        kind, *args = event
        if kind == "report":
            if report is not None:
                report(*args)
        elif progress is not None:
            getattr(progress, kind)(*args)


def _scheduled(
    pool: ProcessPoolExecutor,
    names: Sequence[str],
    needs: Mapping[str, int],
    jobs: int,
    budget: int,
    options: Mapping[str, Any],
) -> ManyRuns:
    """Submit jobs while fewer than `jobs` run and their needs fit the budget; collect them as they end."""
    outcome, waiting = ManyRuns(), list(names)
    running: dict[Future[ConvertRun | JobFailure], str] = {}
    while waiting or running:
        while waiting and len(running) < jobs and _fits(needs, running.values(), waiting[0], budget):
            name = waiting.pop(0)
            running[pool.submit(_run_job, name, dict(options))] = name
        done, _ = wait(running, return_when=FIRST_COMPLETED)
        for future in done:
            name = running.pop(future)
            _record(outcome, name, _result(future))
    return outcome


def _fits(needs: Mapping[str, int], running: Iterable[str], candidate: str, budget: int) -> bool:
    in_use = sum(needs[name] for name in running)
    return not in_use or in_use + needs[candidate] <= budget


def _result(future: Future[ConvertRun | JobFailure]) -> ConvertRun | JobFailure:
    try:
        return future.result()
    except Exception as error:  # the worker died (killed, out of memory): the pool says so
        return JobFailure(f"the worker process failed: {type(error).__name__}: {error}")


__all__ = [
    "BUDGET_SHARE",
    "STREAMING_PEAK_BYTES",
    "JobFailure",
    "ManyRuns",
    "available_memory",
    "convert_many",
    "declared_names",
]

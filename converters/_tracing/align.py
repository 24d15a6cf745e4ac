"""Align a source trace with a target trace into a key map, then check its coverage.

Alignment is deliberately strict: after dropping the tensors that overrides ignore or map
explicitly, the i-th traced source module pairs with the i-th traced target module, and their
tensor shapes must agree (a Linear ``(o, i)`` and a 1x1 conv ``(o, i, 1, 1)`` agree, through a
reshape). The first disagreement stops alignment; anything the traces cannot explain must be
declared as data in :class:`Overrides`. Coverage is then checked on the full state dicts, so
tensors of modules that never ran are seen too, and any gap raises a :class:`CoverageError`
that shows the two traces side by side where they diverge.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from torch import nn

from converters._tracing.keymap import IDENTITY, Coverage, KeyMap, MapEntry, Reshape, Shape
from converters._tracing.report import Divergence, failure_report, format_shape
from converters._tracing.trace import Trace, TracedModule, TracedTensor, state_shapes, trace
from zoo.errors import CoverageError

HINT = (
    "declare an ignore (with a reason) or an explicit pair in the conversion's overrides, "
    "or fix the model so both traces run the same modules in the same order"
)


@dataclass(frozen=True)
class Overrides:
    """What tracing cannot find on its own, declared as data next to a conversion.

    Patterns are exact keys or ``fnmatch`` globs (``*`` also crosses dots); an exact key wins
    over a glob, then the first matching glob in declaration order gives the reason.

    Attributes:
        ignore_source: Source key or pattern → why it is not converted (``position_ids``).
        ignore_target: Target key or pattern → why nothing produces it.
        pairs: Explicit entries, for tensors whose module never runs or that need a split,
            concat or transpose; the tensors they name are removed from alignment.
        reuse_source: Source key or pattern → why several entries may use it (tied weights).
    """

    ignore_source: Mapping[str, str] = field(default_factory=dict)
    ignore_target: Mapping[str, str] = field(default_factory=dict)
    pairs: Sequence[MapEntry] = ()
    reuse_source: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Alignment:
    """What walking both traces found.

    Attributes:
        entries: One entry per paired tensor, in execution order.
        pairs: How many module pairs matched.
        divergence: Where the walk stopped early, if it did.
    """

    entries: tuple[MapEntry, ...]
    pairs: int
    divergence: Divergence | None


def _first_match(patterns: Mapping[str, str], key: str) -> str | None:
    """The exact key if declared, else the first glob matching ``key``."""
    if key in patterns:
        return key
    return next((pattern for pattern in patterns if fnmatchcase(key, pattern)), None)


def _resolve(patterns: Mapping[str, str], keys: Iterable[str]) -> tuple[dict[str, str], list[str]]:
    """Keys matched by ``patterns`` with their reasons, and the patterns that matched nothing."""
    matched: dict[str, str] = {}
    used: set[str] = set()
    for key in keys:
        pattern = _first_match(patterns, key)
        if pattern is not None:
            matched[key] = patterns[pattern]
            used.add(pattern)
    return matched, [pattern for pattern in patterns if pattern not in used]


def _normal(shape: Shape) -> Shape:
    """``shape`` without trailing 1x1 kernel dims, so a Linear meets a 1x1 conv."""
    if len(shape) > 2 and all(size == 1 for size in shape[2:]):
        return shape[:2]
    return shape


def signature(module: TracedModule) -> tuple[Shape, ...]:
    """The module's tensor shapes as a sorted multiset, 1x1 kernels flattened."""
    return tuple(sorted(_normal(tensor.shape) for tensor in module.tensors))


def _pair_tensors(source: TracedModule, target: TracedModule) -> list[tuple[TracedTensor, TracedTensor]]:
    """Pair two matching modules' tensors: by local name if the names agree, else by shape.

    Among tensors of equal shape, registration order decides (weight before bias, q before k).
    Returns an empty list if the modules do not match.
    """
    if signature(source) != signature(target):
        return []
    names = sorted(tensor.local_name for tensor in source.tensors)
    if names == sorted(tensor.local_name for tensor in target.tensors):
        by_name = {tensor.local_name: tensor for tensor in target.tensors}
        pairs = [(tensor, by_name[tensor.local_name]) for tensor in source.tensors]
        same = all(_normal(a.shape) == _normal(b.shape) for a, b in pairs)
        return pairs if same else []
    queues: dict[Shape, list[TracedTensor]] = {}
    for tensor in target.tensors:
        queues.setdefault(_normal(tensor.shape), []).append(tensor)
    return [(tensor, queues[_normal(tensor.shape)].pop(0)) for tensor in source.tensors]


def _entry(source: TracedModule, a: TracedTensor, target: TracedModule, b: TracedTensor) -> MapEntry:
    """One traced tensor pair as an entry: identity, or reshape between Linear and 1x1 conv."""
    transform = IDENTITY if a.shape == b.shape else Reshape(b.shape)
    return MapEntry((source.key(a.local_name),), (target.key(b.local_name),), transform)


def _same_run(a: Sequence[TracedModule], i: int, b: Sequence[TracedModule], j: int, rows: int = 3) -> bool:
    """Whether ``a[i:]`` and ``b[j:]`` agree in signature for (up to) ``rows`` rows."""
    count = min(rows, len(a) - i, len(b) - j)
    return count > 0 and all(signature(a[i + k]) == signature(b[j + k]) for k in range(count))


def _diagnose(source: Sequence[TracedModule], target: Sequence[TracedModule], index: int) -> str:
    """What differs at ``index``, with a guess at why, for the report."""
    if index >= len(source):
        return f"the target runs {len(target) - index} more module(s) than the source"
    if index >= len(target):
        return f"the source runs {len(source) - index} more module(s) than the target"
    here, there = source[index], target[index]
    if signature(here) == signature(there):
        return "same shapes, but the tensors with the same local names have different shapes"
    if _same_run(source, index, target, index + 1, 1) and _same_run(source, index + 1, target, index, 1):
        return f"{here.name!r} and {there.name!r} look swapped: the modules run in a different order"
    if _same_run(source, index + 1, target, index):
        return (
            f"source {here.name!r} has no counterpart here (extra in the source, or never ran in the target)"
        )
    if _same_run(source, index, target, index + 1):
        return (
            f"target {there.name!r} has no counterpart here (extra in the target, or never ran in the source)"
        )
    return _difference(here, there)


def _difference(source: TracedModule, target: TracedModule) -> str:
    """Which shapes one module of a diverging pair holds and the other lacks."""
    ours, theirs = Counter(signature(source)), Counter(signature(target))
    missing = ", ".join(format_shape(shape) for shape in (theirs - ours).elements())
    extra = ", ".join(format_shape(shape) for shape in (ours - theirs).elements())
    if not extra:
        return f"target {target.name!r} also holds [{missing}], which source {source.name!r} lacks"
    if not missing:
        return f"source {source.name!r} also holds [{extra}], which target {target.name!r} lacks"
    return f"tensor shapes differ: source only [{extra}], target only [{missing}]"


def _align(source: Sequence[TracedModule], target: Sequence[TracedModule]) -> _Alignment:
    """Walk both traces in step, pairing modules until the first that do not match."""
    entries: list[MapEntry] = []
    for index, (here, there) in enumerate(zip(source, target, strict=False)):
        pairs = _pair_tensors(here, there)
        if not pairs:
            return _Alignment(tuple(entries), index, Divergence(index, _diagnose(source, target, index)))
        entries += [_entry(here, a, there, b) for a, b in pairs]
    index = min(len(source), len(target))
    if len(source) == len(target):
        return _Alignment(tuple(entries), index, None)
    return _Alignment(tuple(entries), index, Divergence(index, _diagnose(source, target, index)))


def _without(modules: Iterable[TracedModule], dropped: set[str]) -> list[TracedModule]:
    """The modules with the ``dropped`` keys removed, and modules left empty removed."""
    kept = (module.keep(lambda key: key not in dropped) for module in modules)
    return [module for module in kept if module.tensors]


def _unknown_keys(
    entries: Sequence[MapEntry], source_state: Mapping[str, Shape], target_state: Mapping[str, Shape]
) -> list[str]:
    """Problems for entries naming keys that are not in the state dicts."""
    problems = [
        f"{key!r} (in an entry) is not a source state-dict key"
        for entry in entries
        for key in entry.sources
        if key not in source_state
    ]
    problems += [
        f"{key!r} (in an entry) is not a target state-dict key"
        for entry in entries
        for key in entry.targets
        if key not in target_state
    ]
    return problems


def _shape_problems(
    entries: Sequence[MapEntry], source_state: Mapping[str, Shape], target_state: Mapping[str, Shape]
) -> list[str]:
    """Problems for entries whose transform does not yield the target shapes."""
    problems: list[str] = []
    for entry in entries:
        if not all(key in source_state for key in entry.sources):
            continue  # already reported as an unknown key
        try:
            shapes = entry.output_shapes(source_state)
        except ValueError as error:
            problems.append(f"{list(entry.sources)} -> {list(entry.targets)}: {error}")
            continue
        for key, shape in zip(entry.targets, shapes, strict=True):
            expected = target_state.get(key)
            if expected is not None and tuple(expected) != shape:
                problems.append(
                    f"{list(entry.sources)} -> {key!r}: {entry.transform.kind} gives shape {shape}, "
                    f"the target has {tuple(expected)}"
                )
    return problems


def _use_problems(
    entries: Sequence[MapEntry],
    ignored_source: Mapping[str, str],
    ignored_target: Mapping[str, str],
    reused: Mapping[str, str],
) -> list[str]:
    """Problems for targets produced twice, sources used twice undeclared, ignored keys used."""
    sources = Counter(key for entry in entries for key in entry.sources)
    targets = Counter(key for entry in entries for key in entry.targets)
    problems = [f"target {key!r} is produced {n} times" for key, n in targets.items() if n > 1]
    problems += [
        f"source {key!r} is used {n} times (declare it in reuse_source if that is intended)"
        for key, n in sources.items()
        if n > 1 and key not in reused
    ]
    problems += [f"source {key!r} is both ignored and mapped" for key in sources if key in ignored_source]
    problems += [f"target {key!r} is both ignored and produced" for key in targets if key in ignored_target]
    return problems


@dataclass(frozen=True)
class _Side:
    """One model as the coverage check sees it.

    Attributes:
        trace: Its trace.
        modules: The traced modules that take part in alignment (ignored and claimed removed).
        state: Every state-dict key with its shape.
        ignored: Ignored keys with their reasons.
        reused: Keys that several entries may use, with their reasons (source side only).
        stale: Declared patterns that matched no key, named by the override field they came from.
    """

    trace: Trace
    modules: list[TracedModule]
    state: Mapping[str, Shape]
    ignored: dict[str, str]
    reused: dict[str, str]
    stale: list[str]

    def notes(self, divergence: Divergence | None) -> dict[str, str]:
        """Why each traced key might be left out, for the unmapped/unproduced lists."""
        notes = {key: "module never ran" for key in self.trace.not_run_keys()}
        start = divergence.index if divergence else len(self.modules)
        for index in range(start, len(self.modules)):
            notes.update({key: f"traced at #{index}, not aligned" for key in self.modules[index].keys()})
        return notes

    def left_out(self, used: set[str], divergence: Divergence | None) -> list[tuple[str, str]]:
        """Keys neither used nor ignored, in state-dict order, each with a note on why."""
        notes = self.notes(divergence)
        fallback = "held by no module the trace saw: an alias, or a state-dict hook?"
        return [
            (key, notes.get(key, fallback))
            for key in self.state
            if key not in used and key not in self.ignored
        ]


def _side(
    name: str, trace: Trace, state: Mapping[str, Shape], overrides: Overrides, claimed: set[str]
) -> _Side:
    """Resolve one side's overrides and drop its ignored and ``claimed`` tensors from its trace."""
    ignore = overrides.ignore_source if name == "source" else overrides.ignore_target
    reuse = overrides.reuse_source if name == "source" else {}
    ignored, stale_ignores = _resolve(ignore, state)
    reused, stale_reuses = _resolve(reuse, state)
    stale = [f"ignore_{name} {p}" for p in stale_ignores] + [f"reuse_{name} {p}" for p in stale_reuses]
    return _Side(trace, _without(trace.modules, claimed | set(ignored)), state, ignored, reused, stale)


def _check(entries: Sequence[MapEntry], source: _Side, target: _Side, divergence: Divergence | None) -> None:
    """Raise a :class:`CoverageError` with the full report unless ``entries`` cover both sides."""
    unmapped = source.left_out({key for entry in entries for key in entry.sources}, divergence)
    unproduced = target.left_out({key for entry in entries for key in entry.targets}, divergence)
    problems = [f"{len(unmapped)} source tensor(s) mapped by nothing"] if unmapped else []
    problems += [f"{len(unproduced)} target tensor(s) produced by nothing"] if unproduced else []
    problems += [f"traces diverge at module #{divergence.index}"] if divergence and not problems else []
    problems += _unknown_keys(entries, source.state, target.state)
    problems += _shape_problems(entries, source.state, target.state)
    problems += _use_problems(entries, source.ignored, target.ignored, source.reused)
    if problems:
        report = failure_report(problems, source.modules, target.modules, divergence, unmapped, unproduced)
        first = (unmapped or unproduced or [(None, "")])[0][0]
        raise CoverageError(report, tensor=first, hint=HINT)


def _coverage(
    entries: Sequence[MapEntry], source: _Side, target: _Side, aligned: int, declared: int
) -> Coverage:
    """The summary of a key map that passed the coverage check."""
    used = {key for entry in entries for key in entry.sources}
    return Coverage(
        source_tensors=len(source.state),
        target_tensors=len(target.state),
        mapped_sources=len(used),
        produced_targets=len({key for entry in entries for key in entry.targets}),
        aligned_modules=aligned,
        override_entries=declared,
        ignored_source=source.ignored,
        ignored_target=target.ignored,
        reused_source={key: reason for key, reason in source.reused.items() if key in used},
        unused_overrides=(*source.stale, *target.stale),
        transforms=dict(Counter(entry.transform.kind for entry in entries)),
    )


def build_key_map(
    source: Trace,
    target: Trace,
    source_state: Mapping[str, Shape],
    target_state: Mapping[str, Shape],
    overrides: Overrides | None = None,
) -> KeyMap:
    """Align two traces into a key map and check that it covers both state dicts.

    Args:
        source: Trace of the upstream model.
        target: Trace of our model, on the same example inputs.
        source_state: Every source state-dict key with its shape (see ``state_shapes``).
        target_state: Every target state-dict key with its shape.
        overrides: Ignores, explicit pairs and allowed reuses.

    Returns:
        The key map, entries sorted, with its :class:`Coverage` attached.

    Raises:
        CoverageError: A source tensor is neither mapped nor ignored, a target tensor is not
            produced exactly once, shapes disagree after a transform, or a source is used twice
            without a declared reason. The message shows both traces around the divergence.
    """
    overrides = overrides or Overrides()
    # Sides are kept apart: the same key name may mean different tensors in the two models.
    sources = _side(
        "source", source, source_state, overrides, {k for e in overrides.pairs for k in e.sources}
    )
    targets = _side(
        "target", target, target_state, overrides, {k for e in overrides.pairs for k in e.targets}
    )
    alignment = _align(sources.modules, targets.modules)
    entries = (*alignment.entries, *overrides.pairs)
    _check(entries, sources, targets, alignment.divergence)
    coverage = _coverage(entries, sources, targets, alignment.pairs, len(overrides.pairs))
    return KeyMap(entries, dict(source_state), dict(target_state), coverage).sorted()


def trace_key_map(
    source_model: nn.Module,
    target_model: nn.Module,
    run_source: Callable[[nn.Module], object],
    run_target: Callable[[nn.Module], object],
    overrides: Overrides | None = None,
) -> KeyMap:
    """Trace both models, read their state-dict shapes and build the checked key map.

    Args:
        source_model: The upstream model (``meta`` is enough).
        target_model: Our model, built from the matching config.
        run_source: Runs the source model on example inputs.
        run_target: Runs the target model on the same inputs.
        overrides: Ignores, explicit pairs and allowed reuses.

    Raises:
        CoverageError: See :func:`build_key_map`.
    """
    source = trace(source_model, run_source)
    target = trace(target_model, run_target)
    return build_key_map(source, target, state_shapes(source_model), state_shapes(target_model), overrides)

"""Render a coverage failure so that a person sees where the two traces part ways.

The report puts the source and target traces side by side around the first divergence (the
diverging row marked with ``>>``), then lists what is unmapped, keys first, never a bare count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from converters._tracing.trace import Shape, TracedModule

CONTEXT = 3
LIST_LIMIT = 20
MARKER = ">>"


@dataclass(frozen=True)
class Divergence:
    """Where two aligned traces stop matching.

    Attributes:
        index: Position in both traces (after ignored and overridden tensors were removed).
        reason: What differs there, and a guess at why.
    """

    index: int
    reason: str


def format_shape(shape: Shape) -> str:
    """``(64, 32, 1, 1)`` → ``64x32x1x1``; a scalar → ``scalar``."""
    return "x".join(str(size) for size in shape) if shape else "scalar"


def module_cell(module: TracedModule | None) -> str:
    """One side of a report row: name, type and tensor shapes."""
    if module is None:
        return "(end of trace)"
    shapes = ", ".join(format_shape(tensor.shape) for tensor in module.tensors)
    return f"{module.name or '<root>'}  {module.type_name}  [{shapes}]"


def _at(modules: Sequence[TracedModule], index: int) -> TracedModule | None:
    """``modules[index]``, or ``None`` past the end."""
    return modules[index] if index < len(modules) else None


def side_by_side(
    source: Sequence[TracedModule],
    target: Sequence[TracedModule],
    index: int | None,
    context: int = CONTEXT,
) -> str:
    """The two traces in two columns around ``index``, that row marked.

    Args:
        source: The source trace's modules.
        target: The target trace's modules, aligned row by row with ``source``.
        index: The diverging row; ``None`` shows the last rows unmarked (the traces agree).
        context: Rows shown before and after.

    Returns:
        The table as text, one row per line.
    """
    length = max(len(source), len(target))
    centre = index if index is not None else max(length - 1 - context, 0)
    rows = range(max(centre - context, 0), min(centre + context + 1, length))
    cells = [(row, module_cell(_at(source, row)), module_cell(_at(target, row))) for row in rows]
    width = max([len("source"), *(len(left) for _, left, _ in cells)])
    digits = max(len(str(length)), 1)
    lines = [f"{'':{len(MARKER)}} {'#':>{digits}}  {'source':<{width}} | target"]
    for row, left, right in cells:
        mark = MARKER if row == index else ""
        lines.append(f"{mark:{len(MARKER)}} {row:>{digits}}  {left:<{width}} | {right}")
    return "\n".join(lines)


def key_list(title: str, keys: Sequence[tuple[str, str]], limit: int = LIST_LIMIT) -> str:
    """``title (count):`` then the first ``limit`` keys, each with its note, then how many more.

    Args:
        title: What the keys are (``unmapped source tensors``).
        keys: ``(key, note)`` pairs; an empty note prints the key alone.
        limit: Keys shown.
    """
    lines = [f"{title} ({len(keys)}):"]
    lines += [f"  {key}  ({note})" if note else f"  {key}" for key, note in keys[:limit]]
    if len(keys) > limit:
        lines.append(f"  ... and {len(keys) - limit} more")
    return "\n".join(lines)


def failure_report(
    problems: Sequence[str],
    source: Sequence[TracedModule],
    target: Sequence[TracedModule],
    divergence: Divergence | None,
    unmapped: Sequence[tuple[str, str]],
    unproduced: Sequence[tuple[str, str]],
) -> str:
    """The whole message of a coverage failure.

    Args:
        problems: One line per failed check.
        source: The aligned source modules (ignored and overridden tensors removed).
        target: The aligned target modules.
        divergence: The first divergence, if the traces have one.
        unmapped: Source keys no entry uses and nothing ignores, with a note each.
        unproduced: Target keys no entry produces and nothing ignores, with a note each.
    """
    parts = ["key map incomplete:\n" + "\n".join(f"  - {problem}" for problem in problems)]
    if divergence is not None:
        parts.append(f"traces diverge at module #{divergence.index}: {divergence.reason}")
    else:
        parts.append(f"the traces agree over all {len(source)} modules; the end of both:")
    parts.append(side_by_side(source, target, divergence.index if divergence else None))
    if unmapped:
        parts.append(key_list("unmapped source tensors", unmapped))
    if unproduced:
        parts.append(key_list("unproduced target tensors", unproduced))
    return "\n\n".join(parts)

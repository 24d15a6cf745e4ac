"""Streams one checkpoint into a safetensors file under a key map: the core of `zoo convert`.

The key map is a parameter so the declared conversions (`converters/<family>.py`) plug in here;
the benchmark uses the identity map.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping

import torch

from converters.io.readers import CheckpointReader, open_checkpoint
from converters.io.writer import TensorPlan, WriteSummary, write_safetensors
from zoo.errors import CoverageError

_SHOWN_NAMES = 10


def convert_file(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    mapping: Mapping[str, str],
    *,
    dtype: torch.dtype | None = None,
    metadata: Mapping[str, str] | None = None,
    allow_nonfinite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> WriteSummary:
    """Rewrites every tensor of `src` into `dst` under a new name, one tensor at a time.

    Args:
        src: Any checkpoint `open_checkpoint` reads.
        dst: The safetensors file to write.
        mapping: Source name → target name; must cover every source tensor, targets unique.
        dtype: The dtype to write; each tensor keeps its own when None.
        metadata: String metadata for the output header.
        allow_nonfinite: Accept NaN and Inf in the source tensors.
        progress: Called with the bytes written after each tensor.

    Returns:
        The writer's summary of `dst`.

    Raises:
        CoverageError: The mapping misses source tensors, names absent ones, or maps two onto one.
        FormatError: The source is not a valid checkpoint.
        TensorValueError: A tensor holds NaN/Inf or does not fit `dtype`.
    """
    with open_checkpoint(src) as reader:
        _check_coverage(reader, mapping)
        plans = [
            TensorPlan(
                name=mapping[key],
                shape=reader.shape(key),
                dtype=dtype or reader.dtype(key),
                produce=functools.partial(reader.get, key),
            )
            for key in reader.keys()
        ]
        return write_safetensors(dst, plans, metadata, allow_nonfinite=allow_nonfinite, progress=progress)


def _check_coverage(reader: CheckpointReader, mapping: Mapping[str, str]) -> None:
    keys = set(reader.keys())
    _refuse("source tensors the key map does not map", sorted(keys - mapping.keys()), reader)
    _refuse("key map entries with no such source tensor", sorted(mapping.keys() - keys), reader)
    targets: dict[str, str] = {}
    clashes = [
        f"{source} → {target}"
        for source, target in mapping.items()
        if targets.setdefault(target, source) != source
    ]
    _refuse("key map entries that reuse a target name", clashes, reader)


def _refuse(problem: str, names: list[str], reader: CheckpointReader) -> None:
    if names:
        shown = ", ".join(names[:_SHOWN_NAMES]) + (
            f" and {len(names) - _SHOWN_NAMES} more" if len(names) > _SHOWN_NAMES else ""
        )
        raise CoverageError(f"{len(names)} {problem}: {shown}", file=reader.path)


__all__ = ["convert_file"]

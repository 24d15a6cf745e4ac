"""The writer's value check: no NaN/Inf (unless allowed), nothing the target dtype cannot hold.

A tensor is checked whole or chunk by chunk (`update` per chunk, then `finish`): one min/max pass per
chunk, and a count of the bad values only in a chunk that has some.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from zoo.errors import TensorValueError


class ValueCheck:
    """Checks the values of one tensor, given whole or in chunks, against the dtype it is written in."""

    def __init__(self, name: str, target: torch.dtype, *, allow_nonfinite: bool, file: Path) -> None:
        self._name, self._target, self._file = name, target, file
        self._allow_nonfinite = allow_nonfinite
        self._low, self._high = math.inf, -math.inf
        self._nonfinite = 0

    def update(self, values: torch.Tensor) -> None:
        """Take in more of the tensor's values (any shape)."""
        if values.numel() == 0 or values.dtype == torch.bool or self._target == torch.bool:
            return
        low, high = _value_range(values)
        if not (math.isfinite(low) and math.isfinite(high)):
            finite = torch.isfinite(values)
            self._nonfinite += int((~finite).sum())
            if not self._allow_nonfinite:
                return  # the error comes in `finish`, with the count over the whole tensor
            values = values[finite]  # a copy, but only on this rare, opted-in path
            if values.numel() == 0:
                return
            low, high = _value_range(values)
        self._low, self._high = min(self._low, low), max(self._high, high)

    def finish(self) -> None:
        """Raise if any value taken in was refused."""
        if self._nonfinite and not self._allow_nonfinite:
            raise TensorValueError(
                f"holds {self._nonfinite} NaN/Inf values",
                file=self._file,
                tensor=self._name,
                hint="pass allow_nonfinite if they are meant",
            )
        if self._low <= self._high:
            _check_fits(self._low, self._high, self._target, self._name, self._file)


def _value_range(tensor: torch.Tensor) -> tuple[float, float]:
    """Returns (min, max) of a tensor; NaN if it holds any NaN, ±inf if it holds infinities."""
    if tensor.is_complex():
        tensor = torch.view_as_real(tensor)
    try:
        low, high = torch.aminmax(tensor)
    except NotImplementedError:
        # No aminmax kernel for float8 and unsigned 16/32/64-bit ints on CPU: upcast those few.
        low, high = torch.aminmax(tensor.to(torch.float64))
    return float(low), float(high)


def _check_fits(low: float, high: float, target: torch.dtype, name: str, file: Path) -> None:
    info = torch.finfo(target) if target.is_floating_point or target.is_complex else torch.iinfo(target)
    if low < info.min or high > info.max:
        worst = low if info.min - low > high - info.max else high
        raise TensorValueError(
            f"value {worst:g} (max |x| {max(abs(low), abs(high)):g}) does not fit {target} "
            f"(range {info.min:g} to {info.max:g}); the cast would not preserve it",
            file=file,
            tensor=name,
            hint="keep this tensor in a wider dtype (float32 or bfloat16)",
        )


__all__ = ["ValueCheck"]

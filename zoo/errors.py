"""One small hierarchy of typed errors.

Every error carries the file and the tensor it concerns (when there is one) and a hint, so the
CLI boundary can turn it into a one-line message with a next step. A traceback reaching a user
is a bug.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class ZooError(Exception):
    """Base class of every error zoo raises on purpose."""

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        tensor: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.file = str(file) if file is not None else None
        self.tensor = tensor
        self.hint = hint
        super().__init__(self.one_line())

    def one_line(self) -> str:
        where = [f"file {self.file}" if self.file else "", f"tensor {self.tensor!r}" if self.tensor else ""]
        location = ", ".join(part for part in where if part)
        return f"{self.message} ({location})" if location else self.message


class FormatError(ZooError):
    """A checkpoint file is malformed, hostile, or not what it claims to be."""


class TensorValueError(ZooError):
    """A tensor holds NaN/Inf, or a value that does not fit the requested dtype."""


class CoverageError(ZooError):
    """A key map does not use every source tensor or produce every target tensor exactly once."""


class ConfigError(ZooError):
    """A source's configuration is not one a declared conversion supports."""


class HashMismatchError(ZooError):
    """A file's sha256 or size differs from the pinned value."""


class HubError(ZooError):
    """Download or publication through the Hugging Face Hub failed."""


class UsageError(ZooError):
    """A zoo object was used out of its order of calls (e.g. solver steps skipped or repeated)."""


def few(items: Sequence[str], shown: int = 5, separator: str = ", ") -> str:
    """The first `shown` items of a list for a message, and how many more there are."""
    more = f" (+{len(items) - shown} more)" if len(items) > shown else ""
    return separator.join(items[:shown]) + more


__all__ = [
    "ConfigError",
    "CoverageError",
    "FormatError",
    "HashMismatchError",
    "HubError",
    "TensorValueError",
    "UsageError",
    "ZooError",
    "few",
]

"""What every command shares: error rendering, JSON output, tables, dtype and progress options."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, ParamSpec, TypeVar

import click

from zoo.errors import ZooError

P = ParamSpec("P")
R = TypeVar("R")

DTYPES = ("float32", "float16", "bfloat16")


def handle_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn zoo's typed errors into one line (plus a hint) on stderr and exit status 1.

    A traceback reaching a user is a bug; `ZOO_DEBUG=1` shows it anyway for us.
    """

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except ZooError as error:
            _fail(f"error: {error.one_line()}", error.hint)
        except KeyboardInterrupt:
            _fail("interrupted: nothing was left half-written", None)

    return wrapper


def _fail(message: str, hint: str | None) -> NoReturn:
    import os

    if os.environ.get("ZOO_DEBUG"):
        raise
    click.echo(message, err=True)
    if hint:
        click.echo(f"hint: {hint}", err=True)
    sys.exit(1)


def emit_json(data: Any) -> None:
    """Machine-readable output on stdout: sorted keys, one document."""
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain aligned text table."""
    cells = [[str(value) for value in row] for row in rows]
    widths = [
        max(len(h), *(len(row[i]) for row in cells)) if cells else len(h) for i, h in enumerate(headers)
    ]
    line = lambda values: "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()  # noqa: E731
    return "\n".join([line(list(headers)), line(["-" * w for w in widths]), *(line(row) for row in cells)])


def human_bytes(count: int) -> str:
    value = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{count} B"
        value /= 1000
    return f"{value:.1f} TB"


def torch_dtype(name: str | None) -> Any:
    """`float16` -> torch.float16 (None stays None: keep the source's dtype)."""
    if name is None:
        return None
    import torch

    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


def progress_bar(total: int, description: str, enabled: bool) -> Any:
    """A byte progress bar on stderr (tqdm), shown only on a terminal and never with --json."""
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=description,
        unit="B",
        unit_scale=True,
        disable=(not enabled) or None,
        file=sys.stderr,
        leave=False,
    )


__all__ = ["DTYPES", "emit_json", "handle_errors", "human_bytes", "progress_bar", "table", "torch_dtype"]

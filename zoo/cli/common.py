"""What every command shares: error rendering, JSON output, tables, dtype and progress options."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn

import click

from zoo.errors import ZooError

DTYPES = ("float32", "float16", "bfloat16")
# What `pip install 'zoo[convert]'` brings; the runtime (`zoo.load`, fluxion, LoRAs) needs none of it.
CONVERT_EXTRA = frozenset({"diffusers", "transformers", "huggingface_hub", "click", "tqdm"})
CONVERT_HINT = "install the converters: pip install 'zoo[convert]' (or `bash ci/setup convert` in a clone)"


@contextmanager
def user_errors() -> Iterator[None]:
    """The one place where errors become messages: one line (plus a hint) on stderr, exit status 1.

    zoo's typed errors, an interrupt, and a missing package of the convert extra. A traceback reaching a
    user is a bug; `ZOO_DEBUG=1` shows it anyway, for us.
    """
    try:
        yield
    except ZooError as error:
        _fail(f"error: {error.one_line()}", error.hint)
    except KeyboardInterrupt:
        _fail("interrupted: nothing was left half-written", None)
    except ModuleNotFoundError as error:
        if error.name is None or error.name.partition(".")[0] not in CONVERT_EXTRA:
            raise
        _fail(f"error: this command needs {error.name}, which is not installed", CONVERT_HINT)


class ZooGroup(click.Group):
    """The `zoo` group: every command runs inside `user_errors`."""

    def invoke(self, ctx: click.Context) -> Any:
        with user_errors():
            return super().invoke(ctx)


def _fail(message: str, hint: str | None) -> NoReturn:
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


def report_conversion_for_base(done: Any, dry_run: bool, as_json: bool) -> None:
    """Print what a conversion checked against a base wrote (`zoo convert ip-adapter` / `hq-sam`): its
    `to_dict()` as JSON, or a one-row table, its warnings, the folder and the manifest."""
    if as_json:
        emit_json(done.to_dict())
        return
    result = done.result
    row = (
        done.conversion,
        done.base,
        result.tensors,
        f"{result.params:,}",
        human_bytes(result.bytes),
        result.dtype,
        (result.sha256 or "(dry run)")[:16],
        f"{result.seconds:.1f}s",
    )
    headers = ("conversion", "base", "tensors", "params", "bytes", "dtype", "sha256", "time")
    click.echo(table(headers, [row]))
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    if not dry_run:
        click.echo(f"written to {result.folder}/ (model.safetensors, config.json)")
    if done.manifest is not None:
        click.echo(f"recorded in {done.manifest}")


def progress_bar(total: int, description: str, enabled: bool, unit: str = "B") -> Any:
    """A progress bar on stderr (tqdm; bytes by default), shown only on a terminal and never with --json."""
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=description,
        unit=unit,
        unit_scale=unit == "B",
        disable=(not enabled) or None,
        file=sys.stderr,
        leave=False,
    )


__all__ = [
    "CONVERT_EXTRA",
    "CONVERT_HINT",
    "DTYPES",
    "ZooGroup",
    "emit_json",
    "human_bytes",
    "progress_bar",
    "table",
    "torch_dtype",
    "user_errors",
]

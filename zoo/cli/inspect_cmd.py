"""`zoo inspect FILE`: what a checkpoint holds, read safely and without loading its tensors."""

from __future__ import annotations

from pathlib import Path

import click

from zoo.cli.common import emit_json, human_bytes


@click.command("inspect")
@click.argument("file", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--shapes", "pattern", help="List tensors whose names match this glob, with shapes (e.g. '*conv_in*')."
)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def inspect(file: Path, pattern: str | None, as_json: bool) -> None:
    """Format, tensor count, dtypes, parameters, metadata, sha256 and what FILE is (model, family).

    FILE may also be a `zoo convert` output folder (OUT/<name>), which zoo recognises as its own.

    Works on safetensors (header validated by our own parser), sharded safetensors and pickle
    checkpoints (`weights_only=True`: code in a pickle is refused, never run).
    """
    from converters._reports.file_report import inspect_file

    report = inspect_file(file, pattern)
    if as_json:
        emit_json(report.to_dict())
        return
    click.echo(f"file     {report.path}")
    click.echo(f"format   {report.format}")
    click.echo(f"kind     {report.kind or 'nothing zoo knows'}")
    click.echo(f"family   {report.family or 'none declared'}")
    if report.declared:
        click.echo(f"declared {report.declared}")
    if report.conversion:
        click.echo(f"convert  zoo convert {report.conversion} --source {report.path}")
    click.echo(f"tensors  {report.tensors}  ({', '.join(f'{n} {d}' for d, n in report.dtypes.items())})")
    click.echo(f"params   {report.params:,}")
    click.echo(f"size     {human_bytes(report.bytes)}")
    click.echo(f"sha256   {report.sha256}")
    for key, value in report.metadata.items():
        click.echo(f"meta     {key} = {value[:120]}")
    for key, shape in report.shapes.items():
        click.echo(f"  {key}  {tuple(shape)}")

"""`zoo trace NAME`: the key map of a conversion and its coverage, traced on meta at full size."""

from __future__ import annotations

from pathlib import Path

import click

from zoo.cli.common import emit_json


@click.command("trace")
@click.argument("name")
@click.option(
    "--source", help="Trace with this source's config (a folder) instead of the full-size defaults."
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print the key maps (entries, shapes, coverage) as JSON."
)
@click.option("--keys", is_flag=True, help="List every source -> target pair.")
def trace(name: str, source: str | None, as_json: bool, keys: bool) -> None:
    """Show how NAME's upstream tensors map onto our model, without loading any weight.

    Both models are built on the `meta` device and run on example inputs; the modules that hold
    weights are paired in execution order. A gap fails with the two traces side by side.
    """
    from converters._reports.traced import trace_named

    traced = trace_named(name, Path(source) if source else None)
    if as_json:
        emit_json(
            {t.conversion.name: {"keymap_sha256": t.keymap.digest(), **t.keymap.to_dict()} for t in traced}
        )
        return
    for item in traced:
        coverage = item.keymap.coverage
        click.echo(f"== {item.conversion.name}  ({item.model_class}, traced in {item.seconds:.2f}s)")
        click.echo(f"keymap sha256 {item.keymap.digest()}")
        if coverage is not None:
            click.echo(coverage.summary())
        if keys:
            for entry in item.keymap.entries:
                transform = entry.transform.to_dict().get("kind", "identity")
                click.echo(f"  {', '.join(entry.sources)} -> {', '.join(entry.targets)}  [{transform}]")

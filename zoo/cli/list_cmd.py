"""`zoo list`: every declared conversion and its upstream source."""

from __future__ import annotations

import click

from zoo.cli.common import emit_json, handle_errors, table


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def list_conversions(as_json: bool) -> None:
    """List declared conversions: name, upstream repo, parts, licence."""
    _list(as_json)


@handle_errors
def _list(as_json: bool) -> None:
    from converters.inspect import describe_conversions

    described = describe_conversions()
    if as_json:
        emit_json(described)
        return
    rows = [
        (d["name"], d["hub_repo"], ", ".join(d["parts"]), d["license"], d["description"]) for d in described
    ]
    click.echo(table(("name", "upstream", "parts", "licence", "description"), rows))

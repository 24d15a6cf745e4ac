"""`zoo list`: every declared conversion, its upstream source, and whether its outputs are here.

`--json` prints `{"include": [{"name": ..., ...}, ...]}`, one object per declared conversion: a GitHub
Actions matrix as it is (`strategy.matrix: ${{ fromJSON(...) }}`, each job reading `matrix.name`), and
plain data for anything else (`jq -r '.include[].name'` lists the names).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from zoo.cli.common import emit_json, table


@click.command("list")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("out"),
    show_default=True,
    help="Output folder to look for converted outputs (checked by sha256 against its manifest.json).",
)
@click.option("--families", is_flag=True, help="List the registered families instead of the conversions.")
@click.option(
    "--json", "as_json", is_flag=True, help='Print as JSON: {"include": [...]}, a CI matrix as it is.'
)
def list_conversions(out: Path, families: bool, as_json: bool) -> None:
    """List declared conversions: name, upstream repo and pinned revision, licence, outputs in OUT.

    Then the declared files that convert only against a base (Control-LoRAs on the SDXL UNet), with
    the base named in their description.

    With --json, `{"include": [{"name": ...}, ...]}`: a GitHub Actions matrix, one job per conversion
    `zoo convert NAME` runs alone (see ci/github/zoo-convert.yml); the files that need a base are in the
    table only. With --families: the registered families, what each declares and
    what LoRAs may target.
    """
    from converters._reports.catalog import describe_conversions, describe_families

    if families:
        _families(describe_families(), as_json)
        return
    described = describe_conversions(out)
    if as_json:
        emit_json({"include": [d for d in described if not d.get("base")]})
        return
    rows = [
        (
            d["name"],
            d["hub_repo"],
            _revisions(d["sources"]),
            d["license"],
            d["outputs"]["status"],
            d["description"],
        )
        for d in described
    ]
    click.echo(table(("name", "upstream", "revision", "licence", f"outputs in {out}", "description"), rows))


def _families(described: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        emit_json(described)
        return
    rows = [
        (
            f["name"],
            len(f["conversions"]) + len(f["variants"]),
            ", ".join(f["lora_parts"]) or "-",
            f["description"],
        )
        for f in described
    ]
    click.echo(table(("family", "conversions", "LoRA parts", "description"), rows))


def _revisions(sources: list[dict[str, Any]]) -> str:
    revisions = sorted({(source.get("revision") or "unpinned")[:12] for source in sources})
    return ", ".join(revisions)

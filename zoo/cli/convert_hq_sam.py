"""`zoo convert hq-sam FILE --base BASE`: HQ-SAM's modules (`sam_hq_vit_*.pth`) for a Segment Anything base."""

from __future__ import annotations

from pathlib import Path

import click

from zoo.cli.common import DTYPES, report_conversion_for_base, torch_dtype


@click.command("hq-sam")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--base",
    required=True,
    help="A SAM conversion (sam.vit_b, sam.vit_l, sam.vit_h: full-size configs) or its `zoo convert` output folder.",
)
@click.option(
    "--out", type=click.Path(path_type=Path), default=Path("out"), show_default=True, help="Output folder."
)
@click.option("--dtype", type=click.Choice(DTYPES), help="Output dtype (default: keep the file's).")
@click.option("--dry-run", is_flag=True, help="Read, check and plan everything; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def convert_hq_sam(file: Path, base: str, out: Path, dtype: str | None, dry_run: bool, as_json: bool) -> None:
    """Convert the HQ-SAM modules of FILE (`sam_hq_vit_b.pth`, `_l`, `_h`) for BASE.

    The file holds a whole SAM (frozen during HQ-SAM's training) and the HQ modules; only the HQ modules
    are written. The SAM in the file must be BASE's size; with a converted folder as BASE, its weights
    are also compared with the file's. The output is OUT/hq_sam.<size>/ (model.safetensors, config.json),
    recorded in OUT/manifest.json; load it with `zoo.load` and inject it into the SAM with
    `HQSAMAdapter(sam, hq).inject()`.

    \b
    Examples:
      zoo convert hq-sam sam_hq_vit_b.pth --base out/sam.vit_b
      zoo convert hq-sam sam_hq_vit_h.pth --base sam.vit_h --dry-run
    """
    from converters.hq_sam.convert import convert_hq_sam as run

    done = run(file, base, out=out, dtype=torch_dtype(dtype), dry_run=dry_run)
    report_conversion_for_base(done, dry_run, as_json)


__all__ = ["convert_hq_sam"]

"""`zoo convert hq-sam FILE --base BASE`: HQ-SAM's modules (`sam_hq_vit_*.pth`) for a Segment Anything base."""

from __future__ import annotations

from pathlib import Path

import click

from zoo.cli.common import emit_json, human_bytes, table


@click.command("hq-sam")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--base",
    required=True,
    help="A SAM conversion (sam.vit_b, sam.vit_l, sam.vit_h: full-size configs) or its `zoo convert` output folder.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("out/hq_sam"),
    show_default=True,
    help="Output folder; the file keeps its name.",
)
@click.option("--dry-run", is_flag=True, help="Read and check everything; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def convert_hq_sam(file: Path, base: str, out: Path, dry_run: bool, as_json: bool) -> None:
    """Convert the HQ-SAM modules of FILE for BASE into OUT/<FILE name>.safetensors.

    The file holds a whole SAM (frozen during HQ-SAM's training) and the HQ modules; only the HQ modules
    are written. The SAM in the file must be BASE's size; with a converted folder as BASE, its weights
    are also compared with the file's. Load the output into a SAM with
    `HQSAMAdapter(sam, weights=safetensors.torch.load_file(OUT/...)).inject()`.

    \b
    Examples:
      zoo convert hq-sam sam_hq_vit_b.pth --base out/sam.vit_b
      zoo convert hq-sam sam_hq_vit_h.pth --base sam.vit_h --dry-run
    """
    from converters.hq_sam import convert_hq_sam as run_convert

    result = run_convert(file, base, out=out, dry_run=dry_run)
    if as_json:
        emit_json(result.to_dict())
        return
    row = (result.base, result.tensors, f"{result.params:,}", human_bytes(result.bytes), result.dtype)
    click.echo(
        table(("base", "tensors", "params", "bytes", "dtype"), [(*row, (result.sha256 or "(dry run)")[:16])])
    )
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    if not dry_run:
        click.echo(f"written to {result.output}")


__all__ = ["convert_hq_sam"]

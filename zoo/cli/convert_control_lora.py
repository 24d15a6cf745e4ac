"""`zoo convert control-lora FILE --base BASE`: a Control-LoRA merged with its SDXL UNet -> our ControlNet."""

from __future__ import annotations

from pathlib import Path

import click

from zoo.cli.common import emit_json, table


@click.command("control-lora")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--base",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The SDXL UNet `zoo convert` wrote (OUT/sdxl.unet): its weights are the ControlNet's start.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("out/control-lora"),
    show_default=True,
    help="Output folder; the ControlNet goes to OUT/<FILE stem>/.",
)
@click.option("--dry-run", is_flag=True, help="Read, merge and check everything; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def convert_control_lora(file: Path, base: Path, out: Path, dry_run: bool, as_json: bool) -> None:
    """Merge the Control-LoRA FILE into a copy of BASE's UNet encoder: OUT/<FILE stem>/ (a ControlNet).

    Each low-rank pair adds `up @ down` to the copied weight; the file's other tensors replace theirs.
    A base that is not SDXL's, or whose shapes the file does not fit, is refused; nothing is written.
    Load the result with `zoo.load(OUT/<stem>)` and attach it with `ControlNetAdapter`, or pass it to
    `zoo generate --controlnet`.

    \b
    Example:
      zoo convert sdxl --source ./stable-diffusion-xl-base-1.0 --out out
      zoo convert control-lora control-lora-canny-rank128.safetensors --base out/sdxl.unet
    """
    from converters.control_lora import convert_control_lora as run

    result = run(file, base, out, dry_run=dry_run)
    if as_json:
        emit_json(result.to_dict())
        return
    row = (
        result.name,
        result.tensors,
        f"{result.params:,}",
        result.low_rank,
        result.replaced,
        (result.sha256 or "(dry run)")[:16],
    )
    click.echo(table(("component", "tensors", "params", "low-rank", "replaced", "sha256"), [row]))
    if not dry_run:
        click.echo(f"written to {result.folder}")


__all__ = ["convert_control_lora"]

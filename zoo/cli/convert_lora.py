"""`zoo convert lora FILE --base BASE`: a kohya / LoCon / diffusers / PEFT LoRA -> our LoRA format."""

from __future__ import annotations

from pathlib import Path

import click

from zoo.cli.common import emit_json, human_bytes, table


@click.command("lora")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--base",
    required=True,
    help="sdxl or sd15 (full-size configs), a `zoo convert` output folder, or a diffusers pipeline folder.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("out/lora"),
    show_default=True,
    help="Output folder; the file keeps its name.",
)
@click.option(
    "--scale", type=float, default=1.0, show_default=True, help="Folded into the weights with alpha."
)
@click.option("--dry-run", is_flag=True, help="Read, place and check every entry; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def convert_lora(file: Path, base: str, out: Path, scale: float, dry_run: bool, as_json: bool) -> None:
    """Convert the LoRA FILE for BASE into our format: OUT/<FILE name>.safetensors.

    The format is found from the keys (kohya/A1111 with diffusers or SGM block names, LyCORIS LoCon,
    diffusers, PEFT). Every entry must land on exactly one layer of the base, or nothing is written.
    Keys name chain layers (`unet.<path>.lora_down.weight`), alpha / rank and --scale are folded in,
    and the same input gives the same bytes. Load it with `converters.lora.load_lora(model, FILE)`.
    The run is recorded in OUT/manifest.json as the entry `lora/<FILE stem>` (not with --dry-run):
    `zoo verify OUT --hashes --reproduce` checks the file and converts it again to compare.

    \b
    Examples:
      zoo convert lora pixel-art.safetensors --base sdxl
      zoo convert lora style.safetensors --base out --out out/lora     # the base zoo convert wrote
    """
    from converters.lora import convert_lora as run_convert_lora

    result = run_convert_lora(file, base, out=out, scale=scale, dry_run=dry_run)
    if as_json:
        emit_json(result.to_dict())
        return
    layers = ", ".join(f"{component} {count}" for component, count in result.layers.items())
    row = (
        result.format,
        result.family,
        result.entries,
        layers,
        ",".join(map(str, result.ranks)),
        human_bytes(result.bytes),
        (result.sha256 or "(dry run)")[:16],
        f"{result.seconds:.1f}s",
    )
    click.echo(table(("format", "base", "entries", "layers", "rank", "bytes", "sha256", "time"), [row]))
    if not dry_run:
        click.echo(f"written to {result.output}")
    if result.manifest is not None:
        click.echo(f"recorded in {result.manifest}")


__all__ = ["convert_lora"]

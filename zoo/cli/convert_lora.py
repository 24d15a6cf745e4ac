"""`zoo convert lora PATH --base BASE`: a LoRA file, or a folder of them, -> our LoRA format."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from zoo.cli.common import emit_json, human_bytes, progress_bar, table


@click.command("lora")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
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
    help="Output folder; each file keeps its name.",
)
@click.option(
    "--scale", type=float, default=1.0, show_default=True, help="Folded into the weights with alpha."
)
@click.option("--dry-run", is_flag=True, help="Read, place and check every entry; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def convert_lora(path: Path, base: str, out: Path, scale: float, dry_run: bool, as_json: bool) -> None:
    """Convert the LoRA file PATH (or every LoRA file in the folder PATH) for BASE into our format.

    The format is found from the keys (kohya/A1111 with diffusers or SGM block names, LyCORIS, diffusers
    including the old attention-processor layout, PEFT), and each module's update may be a LoRA (LoCon,
    Tucker), LoHa, LoKr, DoRA, or a full or norm diff. Every entry must land on exactly one layer of the
    base, or nothing is written for that file. Keys name chain layers (`unet.<path>.lora_down.weight`),
    alpha and --scale are folded in, and the same input gives the same bytes. Load it with
    `converters.lora.load_lora(model, FILE)`. Each run is recorded in OUT/manifest.json as the entry
    `lora/<FILE stem>` (not with --dry-run): `zoo verify OUT --hashes --reproduce` checks it.

    A folder goes on past the files it cannot convert, lists each with its reason, and exits 1 if any.

    \b
    Examples:
      zoo convert lora pixel-art.safetensors --base sdxl
      zoo convert lora style.safetensors --base out --out out/lora     # the base zoo convert wrote
      zoo convert lora ~/Downloads/loras --base out --json             # a whole folder
    """
    if path.is_dir():
        _convert_folder(path, base, out, scale, dry_run, as_json)
        return
    from converters.lora import convert_lora as run_convert_lora

    result = run_convert_lora(path, base, out=out, scale=scale, dry_run=dry_run)
    if as_json:
        emit_json(result.to_dict())
        return
    click.echo(table(_HEADERS, [_row(result)]))
    if not dry_run:
        click.echo(f"written to {result.output}")
    if result.manifest is not None:
        click.echo(f"recorded in {result.manifest}")


_HEADERS = ("format", "kinds", "base", "entries", "layers", "rank", "bytes", "sha256", "time")


def _row(result: Any) -> tuple[Any, ...]:
    layers = ", ".join(f"{component} {count}" for component, count in result.layers.items())
    return (
        result.format,
        _kinds(result.kinds),
        result.family,
        result.entries,
        layers,
        ",".join(map(str, result.ranks)) or "-",
        human_bytes(result.bytes),
        (result.sha256 or "(dry run)")[:16],
        f"{result.seconds:.1f}s",
    )


def _kinds(kinds: dict[str, int]) -> str:
    return ", ".join(f"{kind} {count}" for kind, count in kinds.items())


def _convert_folder(folder: Path, base: str, out: Path, scale: float, dry_run: bool, as_json: bool) -> None:
    from converters.lora import convert_lora_folder
    from converters.lora.folder import lora_files

    with progress_bar(len(lora_files(folder, out)), "LoRAs", enabled=not as_json, unit="file") as bar:
        done = convert_lora_folder(
            folder, base, out=out, scale=scale, dry_run=dry_run, on_file=lambda _p: bar.update()
        )
    if as_json:
        emit_json(done.to_dict())
    else:
        click.echo(
            table(
                ("file", "status", "format", "kinds", "entries", "reason"), [_summary(i) for i in done.items]
            )
        )
        verb = "checked" if dry_run else "converted"
        click.echo(
            f"{len(done.converted)} {verb}, {len(done.refused)} refused (of {len(done.items)} files in {folder})"
        )
    if done.refused:
        sys.exit(1)


def _summary(item: Any) -> tuple[Any, ...]:
    result = item.result
    if result is None:
        reason = item.error + (f" (hint: {item.hint})" if item.hint else "")
        return (item.source.name, "refused", "-", "-", "-", reason)
    return (item.source.name, "converted", result.format, _kinds(result.kinds), result.entries, "")


__all__ = ["convert_lora"]

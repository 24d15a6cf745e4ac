"""`zoo convert NAME`: upstream checkpoints -> weights for our chain models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from zoo.cli.common import DTYPES, emit_json, human_bytes, progress_bar, table, torch_dtype
from zoo.cli.convert_control_lora import convert_control_lora
from zoo.cli.convert_hq_sam import convert_hq_sam
from zoo.cli.convert_ip_adapter import convert_ip_adapter
from zoo.cli.convert_lora import convert_lora

SUBCOMMANDS = {
    command.name: command
    for command in (convert_lora, convert_ip_adapter, convert_hq_sam, convert_control_lora)
}


class _ConvertCommand(click.Command):
    """`zoo convert NAME`, whose first word may instead name a subcommand (`zoo convert lora FILE`)."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        if args and args[0] in SUBCOMMANDS:
            name = f"{info_name} {args[0]}" if info_name else args[0]
            return SUBCOMMANDS[args[0]].make_context(name, args[1:], parent=parent, **extra)
        return super().make_context(info_name, args, parent=parent, **extra)


@click.command("convert", cls=_ConvertCommand)
@click.argument("name")
@click.option(
    "--source", help="Diffusers pipeline or component folder, single-file checkpoint, or Hub ORG/NAME."
)
@click.option(
    "--revision", help="Hub revision (40-hex commit) when --source is a repo id; default: the pinned one."
)
@click.option(
    "--out", type=click.Path(path_type=Path), default=Path("out"), show_default=True, help="Output folder."
)
@click.option(
    "--dtype", type=click.Choice(DTYPES), help="Output dtype (default: keep the source's), range-checked."
)
@click.option(
    "--synthetic",
    type=click.Choice(["tiny", "full"]),
    help="Convert a seeded random checkpoint with the real upstream layout (offline; tiny or full size).",
)
@click.option(
    "--layout",
    type=click.Choice(["diffusers", "single-file"]),
    default="diffusers",
    show_default=True,
    help="With --synthetic: convert from a diffusers pipeline folder or from an original single file.",
)
@click.option(
    "--allow-nonfinite", is_flag=True, help="Accept NaN/Inf in source tensors (an error by default)."
)
@click.option(
    "--allow-family-mismatch",
    is_flag=True,
    help="Convert a source whose config is not the family's (e.g. an SD 1.5 VAE as sdxl.autoencoder), with a warning.",
)
@click.option("--dry-run", is_flag=True, help="Trace, check and plan everything; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def convert(
    name: str,
    source: str | None,
    revision: str | None,
    out: Path,
    dtype: str | None,
    synthetic: Any,
    layout: Any,
    allow_nonfinite: bool,
    allow_family_mismatch: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Convert NAME (`sdxl`, `sd15`, or one component such as `sdxl.unet`) into OUT/<component>/.

    Each component becomes OUT/<component>/model.safetensors (deterministic bytes) and config.json
    (our model's config), loadable with `zoo.load(OUT/<component>)`, plus what using it needs, copied
    as it is (the text encoders' tokenizers, the UNet's scheduler config: `zoo generate OUT` reads them). Every upstream tensor is used or
    explicitly ignored, or the conversion fails and writes nothing.

    \b
    Examples:
      zoo convert sdxl --synthetic tiny --out out        # offline, seconds
      zoo convert sdxl.unet --source ./stable-diffusion-xl-base-1.0 --dtype float16
      zoo convert sd15 --source v1-5-pruned-emaonly.safetensors
      zoo convert lora style.safetensors --base sdxl     # a LoRA (see `zoo convert lora --help`)
      zoo convert ip-adapter ip-adapter_sd15.bin --base sd15   # see `zoo convert ip-adapter --help`
      zoo convert clip_vision --source ./image_encoder   # a family of alternatives: the source picks one
      zoo convert controlnet --source ./control_v11p_sd15_canny   # or t2i-adapter, by what the source is
      zoo convert control-lora control-lora-canny-rank128.safetensors --base out/sdxl.unet
    """
    from converters._convert.by_name import convert as run_convert

    def progress(conversion: Any, total: int) -> Any:
        return progress_bar(total, conversion.name, enabled=not as_json)

    run = run_convert(
        name,
        out=out,
        source=source,
        revision=revision,
        synthetic=synthetic,
        synthetic_layout=layout,
        dtype=torch_dtype(dtype),
        dry_run=dry_run,
        allow_nonfinite=allow_nonfinite,
        allow_family_mismatch=allow_family_mismatch,
        progress=progress,
        report=None if as_json else lambda line: click.echo(line, err=True),
    )
    if as_json:
        emit_json(run.to_dict())
        return
    if run.synthetic_source:
        click.echo(f"synthetic source written to {run.synthetic_source}")
    rows = [
        (
            r.name,
            r.tensors,
            f"{r.params:,}",
            human_bytes(r.bytes),
            r.dtype,
            (r.sha256 or "(dry run)")[:16],
            f"{r.seconds:.1f}s",
        )
        for r in run.results
    ]
    click.echo(table(("component", "tensors", "params", "bytes", "dtype", "sha256", "time"), rows))
    for result in run.results:
        for warning in result.warnings:
            click.echo(f"warning: {result.name}: {warning}", err=True)
    if not dry_run:
        click.echo(
            f"written to {out}/<component>/ (model.safetensors, config.json); manifest {out}/manifest.json"
        )

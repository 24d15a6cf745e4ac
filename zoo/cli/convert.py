"""`zoo convert NAME...`: upstream checkpoints -> weights for our chain models, one or many at once."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from zoo.cli.common import DTYPES, emit_json, human_bytes, table, torch_dtype
from zoo.cli.convert_control_lora import convert_control_lora
from zoo.cli.convert_hq_sam import convert_hq_sam
from zoo.cli.convert_ip_adapter import convert_ip_adapter
from zoo.cli.convert_lora import convert_lora
from zoo.cli.progress import TerminalProgress

if TYPE_CHECKING:
    from converters._convert.input_hashes import InputHashes

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
@click.argument("names", nargs=-1, metavar="NAME...")
@click.option("--all", "every", is_flag=True, help="Convert every declared conversion (`zoo list`).")
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Conversions run at once, each in its own process (with several names or --all).",
)
@click.option(
    "--memory-budget",
    type=click.FloatRange(min=0, min_open=True),
    help="GB the running jobs may use together (default: 80% of the memory available).",
)
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
@click.option(
    "--durable",
    is_flag=True,
    help="fsync every file written (weights, configs, manifest) before renaming it into place, so it "
    "survives a crash of the machine (waits for the disk; without it, `zoo verify` catches a file a crash "
    "cut short).",
)
@click.option("--dry-run", is_flag=True, help="Trace, check and plan everything; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def convert(
    names: tuple[str, ...],
    every: bool,
    jobs: int,
    memory_budget: float | None,
    source: str | None,
    revision: str | None,
    out: Path,
    dtype: str | None,
    synthetic: Any,
    layout: Any,
    allow_nonfinite: bool,
    allow_family_mismatch: bool,
    durable: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Convert NAME (`sdxl`, `sd15`, or one component such as `sdxl.unet`) into OUT/<component>/.

    Each component becomes OUT/<component>/model.safetensors (deterministic bytes) and config.json
    (our model's config), loadable with `zoo.load(OUT/<component>)`, plus what using it needs, copied
    as it is (the text encoders' tokenizers, the UNet's scheduler config: `zoo generate OUT` reads them). Every upstream tensor is used or
    explicitly ignored, or the conversion fails and writes nothing.

    Several names (or --all) convert one after the other, or --jobs at a time in worker processes
    while their memory fits --memory-budget; a failure does not stop the others, and makes the exit
    status 1. On a terminal, work lasting over a second shows progress bars.

    \b
    Examples:
      zoo convert sdxl --synthetic tiny --out out        # offline, seconds
      zoo convert sdxl.unet --source ./stable-diffusion-xl-base-1.0 --dtype float16
      zoo convert sd15 --source v1-5-pruned-emaonly.safetensors
      zoo convert --all --jobs 4 --out out                # every declared conversion, from the Hub
      zoo convert lora style.safetensors --base sdxl     # a LoRA (see `zoo convert lora --help`)
      zoo convert ip-adapter ip-adapter_sd15.bin --base sd15   # see `zoo convert ip-adapter --help`
      zoo convert clip_vision --source ./image_encoder   # a family of alternatives: the source picks one
      zoo convert controlnet --source ./control_v11p_sd15_canny   # or t2i-adapter, by what the source is
      zoo convert control-lora control-lora-canny-rank128.safetensors --base out/sdxl.unet
    """
    early = len(names) == 1 and not (every or dry_run) and synthetic is None
    hashes = _hashing_early(source) if early else None
    progress = TerminalProgress(enabled=not as_json)
    try:
        chosen = _names(names, every, source, revision)
        options: dict[str, Any] = {
            "out": out,
            "synthetic": synthetic,
            "synthetic_layout": layout,
            "dtype": torch_dtype(dtype),
            "dry_run": dry_run,
            "allow_nonfinite": allow_nonfinite,
            "allow_family_mismatch": allow_family_mismatch,
            "durable": durable,
        }
        report = None if as_json else lambda line: click.echo(line, err=True)
        if len(chosen) == 1 and not every:
            _one(chosen[0], source, revision, {**options, "hashes": hashes}, progress, report, as_json)
        else:
            _many(chosen, jobs, memory_budget, options, progress, report, as_json)
    finally:
        progress.close()
        if hashes is not None:
            hashes.close()


def _hashing_early(source: str | None) -> InputHashes | None:
    """Start hashing the weights `--source` names before the converters (and torch) are imported.

    The imports keep one core busy for about 2 s and leave the other idle: hashing a 5 GB source there
    takes that much off a first conversion (the run then picks the hash up, or stops it if it reads
    other files).
    """
    from converters._convert.input_hashes import InputHashes, weights_named_by

    files = weights_named_by(source) if source is not None else []
    if not files:
        return None
    hashes = InputHashes()
    hashes.start(files)
    return hashes


def _names(names: tuple[str, ...], every: bool, source: str | None, revision: str | None) -> list[str]:
    from converters._convert.jobs import declared_names

    if every and names:
        raise click.UsageError("pass NAME... or --all, not both")
    if not every and not names:
        raise click.UsageError("name what to convert (e.g. `zoo convert sdxl`), or pass --all")
    chosen = declared_names() if every else list(names)
    if (len(chosen) > 1 or every) and (source is not None or revision is not None):
        raise click.UsageError("--source and --revision go with one NAME")
    return chosen


def _one(
    name: str,
    source: str | None,
    revision: str | None,
    options: dict[str, Any],
    progress: TerminalProgress,
    report: Any,
    as_json: bool,
) -> None:
    from converters._convert.by_name import convert as run_convert

    run = run_convert(name, source=source, revision=revision, progress=progress, report=report, **options)
    progress.close()
    if as_json:
        emit_json(run.to_dict())
        return
    if run.synthetic_source:
        click.echo(f"synthetic source written to {run.synthetic_source}")
    _summary(run.results, options)


def _many(
    names: list[str],
    jobs: int,
    memory_budget: float | None,
    options: dict[str, Any],
    progress: TerminalProgress,
    report: Any,
    as_json: bool,
) -> None:
    from converters._convert.jobs import convert_many

    budget = int(memory_budget * 1e9) if memory_budget is not None else None
    outcome = convert_many(
        names, jobs=jobs, memory_budget=budget, progress=progress, report=report, **options
    )
    progress.close()
    if as_json:
        emit_json(outcome.to_dict())
    else:
        _summary([result for run in outcome.runs.values() for result in run.results], options)
    for name, failure in outcome.failures.items():
        click.echo(f"error: {name}: {failure.message}", err=True)
        if failure.hint:
            click.echo(f"hint: {failure.hint}", err=True)
    if outcome.failures:
        click.echo(f"{len(outcome.failures)} of {len(names)} failed", err=True)
        sys.exit(1)


def _summary(results: list[Any], options: dict[str, Any]) -> None:
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
        for r in results
    ]
    click.echo(table(("component", "tensors", "params", "bytes", "dtype", "sha256", "time"), rows))
    for result in results:
        for warning in result.warnings:
            click.echo(f"warning: {result.name}: {warning}", err=True)
    out = options["out"]
    if not options["dry_run"]:
        click.echo(
            f"written to {out}/<component>/ (model.safetensors, config.json); manifest {out}/manifest.json"
        )

"""`zoo verify [NAME|FOLDER ...]`: prove converted outputs against their manifest."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from zoo.cli.common import emit_json, table


@click.command("verify")
@click.argument("targets", nargs=-1)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("out"),
    show_default=True,
    help="Output folder whose manifest.json names are looked up in (and a declared manifest's outputs).",
)
@click.option("--hashes", is_flag=True, help="Check size and sha256 of every file present (the default).")
@click.option("--reproduce", is_flag=True, help="Convert again from the recorded sources and compare bytes.")
@click.option("--parity", is_flag=True, help="Measure output parity against the upstream model (float32).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--strict", is_flag=True, help="Missing, unknown or extra files are failures too.")
@click.option("--record", is_flag=True, help="With --parity: record the measurement in the manifest.")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def verify(
    targets: tuple[str, ...],
    out: Path,
    hashes: bool,
    reproduce: bool,
    parity: bool,
    device: str,
    strict: bool,
    record: bool,
    as_json: bool,
) -> None:
    """Verify outputs against their manifest; exits 1 on any mismatch, naming the file or tensor.

    TARGETS are entry names (`sdxl`, `sdxl.unet`, `lora/style`, looked up in OUT/manifest.json),
    output folders holding a manifest.json, component folders (`OUT/sdxl.unet`), converted LoRA files
    (`out/lora/style.safetensors`) or manifest files (`manifests/sdxl.json`, whose outputs are looked
    for under --out). No target: all of OUT. LoRA entries are reproduced with `zoo convert lora`;
    their parity is not applicable here (the test suite measures it against peft/diffusers).

    \b
    Examples:
      zoo verify                                   # hashes of everything in out/
      zoo verify sd15 --reproduce --parity --strict
      zoo verify out/sd15.autoencoder --parity --record
      zoo verify out/lora --hashes --reproduce     # LoRAs written by `zoo convert lora`
    """
    from converters._verify.verify import verify as run_verify

    if record and not parity:
        raise click.UsageError("--record records a parity measurement: add --parity")
    report = run_verify(
        targets,
        out,
        hashes=hashes or not (reproduce or parity),
        reproduce=reproduce,
        parity=parity,
        device=device,
        strict=strict,
        record=record,
    )
    if as_json:
        emit_json(report.to_dict())
    else:
        rows = [
            ("FAIL" if f.fatal(strict) else f.status, f.entry, f.check, f.subject, f.detail)
            for f in report.findings
        ]
        click.echo(table(("result", "entry", "check", "file", "detail"), rows))
        for failure in report.failures:
            where = f"tensor {failure.tensor!r} in " if failure.tensor else ""
            click.echo(f"error: {failure.entry}: {where}{failure.subject}: {failure.detail}", err=True)
    if not report.ok:
        sys.exit(1)

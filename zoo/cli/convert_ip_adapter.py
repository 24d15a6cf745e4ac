"""`zoo convert ip-adapter FILE --base BASE`: an original IP-Adapter release -> our IP-Adapter model."""

from __future__ import annotations

from pathlib import Path

import click

from zoo.cli.common import DTYPES, report_conversion_for_base, torch_dtype


@click.command("ip-adapter")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--base",
    required=True,
    help="sd15 or sdxl (full-size UNet), a `zoo convert` output folder, a diffusers pipeline or unet folder.",
)
@click.option(
    "--image-encoder",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Also check the adapter reads this image encoder's feature (a `zoo convert` output or a transformers folder).",
)
@click.option(
    "--out", type=click.Path(path_type=Path), default=Path("out"), show_default=True, help="Output folder."
)
@click.option("--dtype", type=click.Choice(DTYPES), help="Output dtype (default: keep the file's).")
@click.option("--dry-run", is_flag=True, help="Read, check and plan everything; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def convert_ip_adapter(
    file: Path,
    base: str,
    image_encoder: Path | None,
    out: Path,
    dtype: str | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Convert the IP-Adapter FILE (`.bin` or `.safetensors`, as h94/IP-Adapter releases them) for BASE.

    The variant (base, plus, full-face; SD 1.5 or SDXL; image feature width) is read from the tensors,
    and the file must fit BASE's UNet: an adapter for another base is refused, naming both. The output
    is OUT/ip_adapter.<variant>/ (model.safetensors, config.json), recorded in OUT/manifest.json; load
    it with `zoo.load` and inject it into a UNet (see the README).

    \b
    Examples:
      zoo convert ip-adapter ip-adapter-plus_sdxl_vit-h.safetensors --base sdxl
      zoo convert ip-adapter ip-adapter_sd15.bin --base out --image-encoder out/clip_vision.vit_h14
    """
    from converters.ip_adapter.convert import convert_ip_adapter as run

    done = run(file, base, out=out, image_encoder=image_encoder, dtype=torch_dtype(dtype), dry_run=dry_run)
    report_conversion_for_base(done, dry_run, as_json)


__all__ = ["convert_ip_adapter"]

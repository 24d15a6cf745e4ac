"""`zoo generate OUT --prompt TEXT`: an image from the SD 1.5 or SDXL models `zoo convert` wrote into OUT."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from zoo.cli.common import DTYPES, emit_json, progress_bar, torch_dtype

SOLVER_NAMES = ("ddim", "euler", "euler_ancestral", "dpmpp_2m", "dpmpp_2m_karras")


def _lora_spec(value: str) -> tuple[Path, float]:
    """`FILE` or `FILE:SCALE` (a Windows-style drive colon is not a scale)."""
    path, separator, scale = value.rpartition(":")
    if separator and path and not scale.startswith(("/", "\\")):
        try:
            return Path(path), float(scale)
        except ValueError:
            pass
    return Path(value), 1.0


@click.command("generate")
@click.argument("out", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--prompt", required=True, help="What to draw.")
@click.option("--negative-prompt", help="What to steer away from (SDXL without one: zeros, as diffusers).")
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed of the starting noise (CPU generator)."
)
@click.option("--steps", type=click.IntRange(1, 1000), default=30, show_default=True)
@click.option("--solver", type=click.Choice(SOLVER_NAMES), default="euler", show_default=True)
@click.option(
    "--guidance", type=float, default=7.5, show_default=True, help="Classifier-free guidance scale."
)
@click.option("--width", type=int, help="Pixels (default: the size the UNet was trained at).")
@click.option("--height", type=int, help="Pixels (default: the size the UNet was trained at).")
@click.option(
    "--lora",
    "loras",
    multiple=True,
    metavar="FILE[:SCALE]",
    help="A LoRA (any format zoo reads) into the UNet and text encoder; repeatable.",
)
@click.option(
    "--controlnet",
    "controlnets",
    multiple=True,
    metavar="DIR[:SCALE]",
    help="A ControlNet `zoo convert controlnet` (or `control-lora`) wrote; repeatable.",
)
@click.option(
    "--t2i-adapter",
    "adapters",
    multiple=True,
    metavar="DIR[:SCALE]",
    help="A T2I-Adapter `zoo convert t2i-adapter` wrote; repeatable.",
)
@click.option(
    "--control-image",
    "control_images",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The condition image (edges, depth, pose...): one for all controls, or one per control in order "
    "(ControlNets first); resized to the image size.",
)
@click.option(
    "--ip-adapter",
    "ip_adapters",
    multiple=True,
    metavar="DIR[:SCALE]",
    help="An IP-Adapter `zoo convert ip-adapter` wrote; repeatable. Needs --image.",
)
@click.option(
    "--image",
    "images",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The image prompt: one for all IP-Adapters, or one per IP-Adapter in order.",
)
@click.option(
    "--image-encoder",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The CLIP image encoder `zoo convert clip_vision.*` wrote (default: the one in OUT that fits).",
)
@click.option("--family", help="Which pipeline, when OUT holds several.")
@click.option(
    "--autoencoder", type=click.Path(path_type=Path), help="Which autoencoder folder, when OUT holds several."
)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:1, ...")
@click.option("--dtype", type=click.Choice(DTYPES), default="float32", show_default=True)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("image.png"),
    show_default=True,
    help="The PNG to write (its text metadata holds the generation parameters).",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was done as JSON.")
def generate(
    out: Path,
    prompt: str,
    negative_prompt: str | None,
    seed: int,
    steps: int,
    solver: str,
    guidance: float,
    width: int | None,
    height: int | None,
    loras: tuple[str, ...],
    controlnets: tuple[str, ...],
    adapters: tuple[str, ...],
    control_images: tuple[Path, ...],
    ip_adapters: tuple[str, ...],
    images: tuple[Path, ...],
    image_encoder: Path | None,
    family: str | None,
    autoencoder: Path | None,
    device: str,
    dtype: str,
    output: Path,
    as_json: bool,
) -> None:
    """Generate an image from the models `zoo convert sd15|sdxl` wrote into OUT.

    The same seed and settings give the same image as diffusers' pipeline on the upstream weights.

    \b
    Examples:
      zoo convert sdxl --synthetic tiny --out out && zoo generate out --prompt "a lighthouse" --steps 4
      zoo generate out --prompt "a cat" --negative-prompt "blurry" --solver dpmpp_2m_karras --seed 7
      zoo generate out --prompt "a cat" --lora style.safetensors:0.8 --device cuda --dtype float16
      zoo generate out --prompt "a house" --controlnet out/controlnet.sdxl:0.7 --control-image edges.png
      zoo generate out --prompt "a cat" --ip-adapter out/ip_adapter.sdxl:0.6 --image style.png
    """
    from zoo.foundationals.latent_diffusion.model import GenerationSettings
    from zoo.png import write_png
    from zoo.text_to_image import load_stable_diffusion

    started = time.perf_counter()
    model = load_stable_diffusion(
        out, device=device, dtype=torch_dtype(dtype), family=family, autoencoder=autoencoder
    )
    applied = [_apply_lora(model, *_lora_spec(spec)) for spec in loras]
    settings = GenerationSettings(prompt, negative_prompt, seed, steps, solver, guidance, width, height)
    controls = _attach_controls(model, controlnets, adapters, control_images, settings)
    prompts = _attach_image_prompts(model, ip_adapters, images, image_encoder, out, settings)
    bar = progress_bar(steps, "steps", enabled=not as_json, unit="step")
    try:
        generated = model.generate(settings, on_step=lambda done, _total: bar.update(1))
    finally:
        bar.close()
    metadata = _metadata(settings, applied) | ({"controls": controls} if controls else {})
    metadata |= {"ip_adapters": prompts} if prompts else {}
    write_png(
        output, generated.image, {"parameters": json.dumps(metadata, sort_keys=True), "Software": "zoo"}
    )
    summary = {"output": str(output), "seconds": round(time.perf_counter() - started, 3), **metadata}
    if as_json:
        emit_json(summary)
    else:
        _, _, image_height, image_width = generated.image.shape
        click.echo(f"wrote {output} ({image_width}×{image_height}, {steps} {solver} steps, seed {seed})")


def _apply_lora(model: Any, path: Path, scale: float) -> dict[str, Any]:
    """Inject a LoRA file into the UNet and the text encoder (either may be untouched by it)."""
    from converters.lora import load_lora_into

    loaded = load_lora_into([model.unet, model.text_encoder], path, scale=scale)
    return {"file": str(path), "scale": scale, "layers": {lora.component: lora.layers for lora in loaded}}


def _attach_controls(
    model: Any,
    controlnets: tuple[str, ...],
    adapters: tuple[str, ...],
    images: tuple[Path, ...],
    settings: Any,
) -> list[dict[str, Any]]:
    from zoo.cli.generate_controls import attach_controls

    if (controlnets or adapters) and not images:
        raise click.UsageError("--controlnet and --t2i-adapter need --control-image")
    size = (settings.height or model.default_size, settings.width or model.default_size)
    return attach_controls(
        model, [_lora_spec(s) for s in controlnets], [_lora_spec(s) for s in adapters], images, size
    )


def _attach_image_prompts(
    model: Any,
    ip_adapters: tuple[str, ...],
    images: tuple[Path, ...],
    image_encoder: Path | None,
    out: Path,
    settings: Any,
) -> list[dict[str, Any]]:
    from zoo.cli.generate_image_prompts import attach_ip_adapters

    if ip_adapters and not images:
        raise click.UsageError("--ip-adapter needs --image")
    if images and not ip_adapters:
        raise click.UsageError("--image is the image prompt of an --ip-adapter: give one")
    specs = [_lora_spec(spec) for spec in ip_adapters]
    return attach_ip_adapters(model, specs, images, image_encoder, out, guided=settings.guidance > 1)


def _metadata(settings: Any, loras: list[dict[str, Any]]) -> dict[str, Any]:
    data = settings.to_dict()
    data["loras"] = loras
    return data

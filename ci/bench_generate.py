"""Benchmark: seconds per denoising step, zoo's text-to-image vs diffusers' pipeline, same weights.

A pipeline is built with diffusers' and transformers' classes (random weights, the family's configs at
tiny or full size), saved with its own `save_pretrained`, and converted with `zoo convert`. Then each
side runs in its own process (one model in memory at a time: a full-size SDXL UNet is 10 GB in float32)
with the same prompt, seed, solver and size, and the time of every step is taken from the step
callbacks (diffusers' `callback_on_step_end`, zoo's `on_step`). The first step of a run warms up and
is not counted. Prints the median seconds per step of each side and their ratio.

This is not a test; run it by hand:

    python ci/bench_generate.py                                   # tiny SD 1.5 and SDXL, seconds
    python ci/bench_generate.py --size full --family sd15 --steps 3 --pixels 256   # minutes, ~8 GB
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
PROMPT = "a photo of an astronaut riding a horse on the moon"
TOKENIZER_PADS = {"tokenizer": "<|endoftext|>", "tokenizer_2": "!"}


def build_pipeline(family: str, size: str, folder: Path) -> None:
    """A diffusers pipeline folder of the family at that size, random weights, saved by diffusers."""
    sys.path.insert(0, str(REPO_ROOT))
    import diffusers
    import transformers

    from converters import registry
    from converters.stable_diffusion.assets import write_synthetic_tokenizer

    family_ = registry.family(family)
    configs: dict[str, dict[str, Any]] = {}
    for conversion in family_.conversions:
        configs.update(conversion.synthetic_configs(size))  # pyright: ignore[reportArgumentType]
    parts: dict[str, Any] = {}
    for name, config in configs.items():
        if name.startswith("text_encoder"):
            (architecture,) = config["architectures"]
            text_config = transformers.CLIPTextConfig.from_dict(config)
            parts[name] = getattr(transformers, architecture)(text_config)
        else:
            parts[name] = getattr(diffusers, "UNet2DConditionModel" if name == "unet" else "AutoencoderKL")(
                **config
            )
    for name, pad in TOKENIZER_PADS.items():
        tower = "text_encoder" if name == "tokenizer" else "text_encoder_2"
        if tower in configs:
            length, vocab = configs[tower]["max_position_embeddings"], configs[tower]["vocab_size"]
            write_synthetic_tokenizer(folder / "raw" / name, pad, length, vocab)
            parts[name] = transformers.CLIPTokenizer.from_pretrained(folder / "raw" / name)
    scheduler = next(c for c in family_.conversions if c.assets and c.assets[0].role == "scheduler").assets[0]
    assert scheduler.write_synthetic is not None
    scheduler.write_synthetic(folder / "raw" / "scheduler", size)  # pyright: ignore[reportArgumentType]
    parts["scheduler"] = diffusers.EulerDiscreteScheduler.from_pretrained(folder / "raw" / "scheduler")
    pipeline_class = getattr(diffusers, family_.pipeline_class or "")
    extra = {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
    pipeline = pipeline_class(**parts, **({} if family == "sdxl" else extra))
    pipeline.save_pretrained(folder / "pipeline")


def run_diffusers(folder: Path, steps: int, pixels: int) -> list[float]:
    import torch
    from diffusers import DiffusionPipeline

    pipeline = DiffusionPipeline.from_pretrained(folder / "pipeline")
    pipeline.set_progress_bar_config(disable=True)
    stamps = [time.perf_counter()]

    def stamp(_pipeline: Any, _step: int, _timestep: Any, values: dict[str, Any]) -> dict[str, Any]:
        stamps.append(time.perf_counter())
        return values

    with torch.no_grad():
        pipeline(
            PROMPT,
            num_inference_steps=steps,
            guidance_scale=5.0,
            height=pixels,
            width=pixels,
            generator=torch.Generator().manual_seed(0),
            output_type="latent",
            callback_on_step_end=stamp,
        )
    return [b - a for a, b in itertools.pairwise(stamps[1:])]  # the first step warms up


def run_zoo(folder: Path, steps: int, pixels: int) -> list[float]:
    sys.path.insert(0, str(REPO_ROOT))
    from zoo.foundationals.latent_diffusion.model import GenerationSettings
    from zoo.text_to_image import load_stable_diffusion

    model = load_stable_diffusion(folder / "out")
    settings = GenerationSettings(PROMPT, None, 0, steps, "euler", 5.0, pixels, pixels)
    stamps = [time.perf_counter()]
    model.generate(settings, on_step=lambda _done, _all: stamps.append(time.perf_counter()))
    return [b - a for a, b in itertools.pairwise(stamps[1:])]  # the first step warms up


def _child(side: str, folder: Path, steps: int, pixels: int) -> list[float]:
    command = [sys.executable, __file__, "--child", side, "--folder", str(folder), "--steps", str(steps)]
    done = subprocess.run([*command, "--pixels", str(pixels)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench(family: str, size: str, steps: int, pixels: int, repeat: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="zoo-bench-generate-") as temp:
        folder = Path(temp)
        build_pipeline(family, size, folder)
        convert = [sys.executable, "-m", "zoo.cli", "convert", family, "--source", str(folder / "pipeline")]
        subprocess.run(
            [*convert, "--out", str(folder / "out")], check=True, capture_output=True, cwd=REPO_ROOT
        )
        times: dict[str, list[float]] = {"diffusers": [], "zoo": []}
        for _ in range(repeat):  # alternate, so a drift of the machine's speed hits both sides alike
            for side in times:
                times[side] += _child(side, folder, steps, pixels)
    medians = {side: statistics.median(values) for side, values in times.items()}
    return {"family": family, "size": size, "pixels": pixels, "steps_timed": len(times["zoo"]), **medians}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--family", action="append", help="sd15, sdxl (default: both)")
    parser.add_argument("--size", choices=("tiny", "full"), default="tiny")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--pixels", type=int, default=None, help="default: 64 tiny, 512 full")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", choices=("diffusers", "zoo"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    pixels = args.pixels or (64 if args.size == "tiny" else 512)
    if args.child:
        run = run_diffusers if args.child == "diffusers" else run_zoo
        print(json.dumps(run(args.folder, args.steps, pixels)))
        return
    print(
        f"{'family':8} {'size':5} {'pixels':>6} {'steps':>5} {'diffusers s/step':>17} {'zoo s/step':>11} {'zoo/diffusers':>13}"
    )
    for family in args.family or ["sd15", "sdxl"]:
        row = bench(family, args.size, args.steps, pixels, args.repeat)
        ratio = row["zoo"] / row["diffusers"]
        print(
            f"{family:8} {args.size:5} {pixels:>6} {row['steps_timed']:>5} {row['diffusers']:>17.4f} "
            f"{row['zoo']:>11.4f} {ratio:>13.2f}"
        )


if __name__ == "__main__":
    main()

"""Benchmark: one UNet forward, diffusers' `UNet2DConditionModel` vs ours converted from it, alternating.

Both models live in one process and run the same inputs in turn (diffusers, zoo, diffusers, ...), so
load from other processes on a shared machine hits both sides alike: the ratio of the medians is
what to read. The UNet is built with diffusers' class (random weights, the family's config at tiny or
full size), saved with `save_pretrained` and converted with `zoo convert FAMILY.unet`; the outputs are
compared first (the maximum absolute difference is printed). `--profile` adds torch's op table of one
forward per side, to see where the time goes.

This is not a test; run it by hand:

    python ci/bench_unet.py                                   # tiny SD 1.5 and SDXL, seconds
    python ci/bench_unet.py --size full --family sd15 --latent 32 --repeat 4   # ~7 GB, a few minutes

Measured (2026-12-02, 2 shared cores, one torch thread): full SD 1.5, 32×32 latents, batch 2:
diffusers 5.35 s, zoo 5.36 s per forward (ratio 1.00, outputs equal); tiny: 1.00 (SD 1.5), 0.97 (SDXL).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def _models(family: str, size: str, folder: Path) -> tuple[Any, Any]:
    from diffusers import UNet2DConditionModel

    import zoo
    from converters import registry
    from converters._convert.by_name import convert

    conversion = registry.all_conversions()[f"{family}.unet"]
    torch.manual_seed(0)
    UNet2DConditionModel.from_config(conversion.synthetic_configs(size)["unet"]).save_pretrained(
        folder / "unet"
    )
    run = convert(f"{family}.unet", out=folder / "out", source=str(folder))
    reference = UNet2DConditionModel.from_pretrained(folder / "unet").eval()
    return reference, zoo.load(run.results[0].folder).eval()


def _runners(reference: Any, ours: Any, latent: int) -> tuple[Callable[[], Any], Callable[[], Any]]:
    from converters.stable_diffusion.unet import unet_example_inputs

    inputs = unet_example_inputs(ours.config, batch_size=2, latent_size=latent, text_length=77, seed=1)
    added = {}
    if inputs.pooled_text_embedding is not None:
        added = {"text_embeds": inputs.pooled_text_embedding, "time_ids": inputs.time_ids}

    def theirs() -> Any:
        return reference(
            inputs.latents, inputs.timestep, inputs.text_embedding, added_cond_kwargs=added, return_dict=False
        )[0]

    return theirs, lambda: inputs.run_target(ours)


def _profile(name: str, run: Callable[[], Any]) -> None:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as profiled:
        run()
    print(name)
    print(profiled.key_averages().table(sort_by="self_cpu_time_total", row_limit=10))


def bench(family: str, size: str, latent: int, repeat: int, profile: bool) -> None:
    with tempfile.TemporaryDirectory() as temp, torch.no_grad():
        theirs, ours = _runners(*_models(family, size, Path(temp)), latent)
        difference = (theirs() - ours()).abs().max().item()
        times: dict[str, list[float]] = {"diffusers": [], "zoo": []}
        for _ in range(repeat):
            for name, run in (("diffusers", theirs), ("zoo", ours)):
                started = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - started)
        first, second = (statistics.median(times[name]) for name in ("diffusers", "zoo"))
        print(
            f"{family:6} {size:5} {latent:6} {repeat:6} {first:14.4f} {second:10.4f} {second / first:13.2f}"
            f"   (max |difference| {difference:.1e})"
        )
        if profile:
            _profile("diffusers", theirs)
            _profile("zoo", ours)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", choices=["sd15", "sdxl"], help="default: both")
    parser.add_argument("--size", choices=["tiny", "full"], default="tiny")
    parser.add_argument("--latent", type=int, help="latents per side (default: 16 tiny, 64 full)")
    parser.add_argument("--repeat", type=int, help="timed forwards per side (default: 20 tiny, 3 full)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--profile", action="store_true", help="print the op table of one forward each")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    full = args.size == "full"
    latent, repeat = args.latent or (64 if full else 16), args.repeat or (3 if full else 20)
    print("family size   latent repeat  diffusers s/f    zoo s/f zoo/diffusers")
    for family in [args.family] if args.family else ["sd15", "sdxl"]:
        bench(family, args.size, latent, repeat, args.profile)


if __name__ == "__main__":
    main()

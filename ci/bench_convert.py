"""Benchmark: converting a full-size SDXL UNet checkpoint (fp16, 5.1 GB) with zoo's reader + writer.

Builds, once, a synthetic SDXL UNet safetensors file: the shapes come from diffusers'
`UNet2DConditionModel` built on the meta device, the values are seeded random numbers streamed
through our writer, so the whole model is never in memory. Then runs each task in its own
subprocess, so that peak RSS (from `wait4`) is that task's alone:

- zoo: `zoo convert sdxl.unet` on that folder: config derivation, meta trace, the real key map onto
  our UNet, checks, streaming write (run --repeat times: equal sha256 across processes is checked);
- trace-meta / trace-real: the full-size key map traced on meta, vs the same trace with real random
  bfloat16 weights on CPU (skip the latter with --skip-real-trace);
- rewrite: `safetensors.torch.load_file` + `save_file`, the plain way to rewrite a file;
- rewrite+fsync: the same, then fsync, since our writer makes its output durable and that costs time;
- idle: the imports alone, the floor under every task's RSS.

This is not a test; run it by hand or from CI and read the figures:

    python ci/bench_convert.py --cache /tmp/zoo-bench --clean
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]

# MODELS.md's figures for the SDXL UNet; its config comes from the `sdxl.unet` declaration.
EXPECTED_TENSORS, EXPECTED_VALUES = 1680, 2_567_463_684

Detail = dict[str, Any]


def sdxl_unet_config() -> dict[str, Any]:
    """The full-size upstream UNet config, as `zoo convert sdxl.unet --synthetic full` uses it."""
    sys.path.insert(0, str(REPO_ROOT))
    from converters import registry

    return registry.resolve("sdxl.unet")[0].synthetic_configs("full")["unet"]


# --- Tasks: each runs in a child process; imports are local so the parent stays light ------------


def task_idle(_args: list[str]) -> Detail:
    """Imports what the other tasks import, and nothing more."""
    import safetensors.torch  # noqa: F401
    import torch  # noqa: F401

    import converters._checkpoints  # noqa: F401

    return {}


def task_build(args: list[str]) -> Detail:
    """Streams a synthetic SDXL UNet (fp16) into `args[0]` with seed `args[1]`."""
    import torch
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel

    from converters._checkpoints import TensorPlan, write_safetensors

    path, seed = Path(args[0]), int(args[1])
    with torch.device("meta"):
        unet = UNet2DConditionModel(**sdxl_unet_config())
    shapes = {name: tuple(tensor.shape) for name, tensor in unet.state_dict().items()}

    def random_values(name: str, shape: tuple[int, ...]) -> Callable[[], torch.Tensor]:
        # One generator per tensor, seeded from its name: values do not depend on write order.
        tensor_seed = int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "little")
        return lambda: torch.randn(shape, generator=torch.Generator().manual_seed(tensor_seed)).mul_(0.02)

    plans = [
        TensorPlan(name, shape, torch.float16, random_values(name, shape)) for name, shape in shapes.items()
    ]
    summary = write_safetensors(path, plans)
    if (summary.tensor_count, summary.param_count) != (EXPECTED_TENSORS, EXPECTED_VALUES):
        raise SystemExit(
            f"unexpected SDXL UNet size: {summary.tensor_count} tensors, {summary.param_count} values"
        )
    return {"sha256": summary.sha256, "bytes": summary.byte_count, "tensors": summary.tensor_count}


def task_zoo(args: list[str]) -> Detail:
    """`zoo convert sdxl.unet`: the diffusers UNet folder holding `args[0]` onto our UNet, in `args[1]`.

    The whole pipeline: config derivation, meta trace, key map, checks, streaming write.
    """
    from converters import registry
    from converters._convert.component import convert_component
    from converters._convert.sources import resolve_source

    conversion = registry.resolve("sdxl.unet")[0]
    out = Path(args[1])
    result = convert_component(conversion, resolve_source(conversion, Path(args[0]).parent), out)
    written = out / "sdxl.unet" / "model.safetensors"
    detail = {"sha256": result.sha256, "bytes": result.bytes}
    shutil.rmtree(out)
    return detail | {"removed": str(written)}


def task_trace_meta(_args: list[str]) -> Detail:
    """The full-size SDXL UNet key map: both models built and traced on meta."""
    from converters import registry
    from converters._convert.component import trace_conversion

    conversion = registry.resolve("sdxl.unet")[0]
    traced = trace_conversion(conversion, conversion.synthetic_configs("full"), use_cache=False)
    # `seconds` of the task includes importing diffusers; this is building both models + tracing.
    return {"entries": len(traced.keymap.entries), "build_and_trace_seconds": round(traced.seconds, 2)}


def task_trace_real(_args: list[str]) -> Detail:
    """The same trace with real (random, bfloat16) weights on CPU: what tracing costs without meta."""
    import torch

    from converters import registry
    from converters._tracing import trace_key_map
    from converters.declaration import upstream_model

    conversion = registry.resolve("sdxl.unet")[0]
    configs = conversion.synthetic_configs("full")
    config = conversion.derive_config(configs)
    started = time.perf_counter()
    torch.set_default_dtype(torch.bfloat16)  # two fp32 models would not fit next to each other here
    upstream, ours = upstream_model(conversion, configs), conversion.build_target(config)
    inputs = conversion.example_inputs(config, "cpu", torch.bfloat16)
    keymap = trace_key_map(
        upstream,
        ours,
        lambda model: conversion.run_upstream(model, inputs),
        lambda model: conversion.run_target(model, inputs),
        conversion.overrides(config),
    )
    return {
        "entries": len(keymap.entries),
        "build_and_trace_seconds": round(time.perf_counter() - started, 2),
    }


def task_rewrite(args: list[str]) -> Detail:
    """Rewrites `args[0]` into `args[1]` with `load_file` + `save_file`."""
    from safetensors.torch import load_file, save_file

    save_file(load_file(args[0]), args[1])
    return {"bytes": Path(args[1]).stat().st_size}


def task_rewrite_fsync(args: list[str]) -> Detail:
    """Like `task_rewrite`, then fsyncs the output, as our writer does."""
    detail = task_rewrite(args)
    with open(args[1], "rb") as stream:
        os.fsync(stream.fileno())
    return detail


TASKS: dict[str, Callable[[list[str]], Detail]] = {
    "idle": task_idle,
    "build": task_build,
    "zoo": task_zoo,
    "rewrite": task_rewrite,
    "rewrite-fsync": task_rewrite_fsync,
    "trace-meta": task_trace_meta,
    "trace-real": task_trace_real,
}

# (label, task, baseline label, baseline task): the ratios the benchmark reports.
COMPARISONS: list[tuple[str, str, str, str]] = [
    ("zoo convert sdxl.unet", "zoo", "load_file + save_file", "rewrite"),
    ("zoo convert sdxl.unet", "zoo", "load_file + save_file + fsync", "rewrite-fsync"),
    ("trace on meta", "trace-meta", "trace with real weights", "trace-real"),
]


def run_child(task: str, args: list[str]) -> None:
    """Child side: runs a task, prints its own duration (imports excluded) as a JSON line."""
    sys.path.insert(0, str(REPO_ROOT))
    start = time.perf_counter()
    detail = TASKS[task](args)
    print(json.dumps({"seconds": time.perf_counter() - start, "detail": detail}))


# --- Parent side ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    """One task run in its own process.

    Attributes:
        task: The task's name.
        seconds: Time spent in the task itself, as the child measured it (imports excluded).
        process_seconds: Wall time of the whole child process, start-up and imports included.
        peak_rss: The child's peak resident set size, in bytes.
        detail: What the task reported.
    """

    task: str
    seconds: float
    process_seconds: float
    peak_rss: int
    detail: Detail


def measure(task: str, *args: str | Path) -> Measurement:
    """Runs a task in a fresh interpreter and measures it."""
    # Flush the previous task's dirty pages first, or their writeback would slow this task down.
    os.sync()
    start = time.perf_counter()
    command = [sys.executable, str(Path(__file__).resolve()), "--task", task, *map(str, args)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    output = process.stdout.read()
    # wait4 gives this child's own rusage; RUSAGE_CHILDREN would mix all children together.
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"task {task!r} failed with exit code {process.returncode}")
    report = json.loads(output.strip().splitlines()[-1])
    # Linux reports ru_maxrss in KiB.
    return Measurement(
        task, report["seconds"], time.perf_counter() - start, usage.ru_maxrss * 1024, report["detail"]
    )


def ensure_source(cache: Path, seed: int) -> tuple[Path, Measurement | None, str]:
    """Returns the cached synthetic checkpoint, its build measurement (None if reused) and sha256."""
    folder = cache / f"sdxl-unet-fp16-seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(sdxl_unet_config()))
    path = folder / "diffusion_pytorch_model.safetensors"
    sidecar = path.with_suffix(".json")
    # The writer is atomic, so an existing file is complete; the sidecar holds its digest.
    if path.exists() and sidecar.exists():
        return path, None, json.loads(sidecar.read_text())["sha256"]
    build = measure("build", path, str(seed))
    sidecar.write_text(json.dumps(build.detail))
    return path, build, build.detail["sha256"]


def run_conversions(source: Path, cache: Path, repeat: int, skip_real_trace: bool) -> list[Measurement]:
    """Runs every conversion task `repeat` times, alternating, deleting each output after use."""
    results = [measure("idle"), measure("trace-meta")]
    if not skip_real_trace:
        results.append(measure("trace-real"))
    for _ in range(repeat):
        for task in ("zoo", "rewrite", "rewrite-fsync"):
            output = cache / (f"out-{task}" if task == "zoo" else f"out-{task}.safetensors")
            results.append(measure(task, source, output))
            if output.is_file():
                output.unlink()
    return results


def fastest(results: list[Measurement]) -> dict[str, Measurement]:
    """Returns the fastest run of each task."""
    best: dict[str, Measurement] = {}
    for result in results:
        if result.task not in best or result.seconds < best[result.task].seconds:
            best[result.task] = result
    return best


def report(results: list[Measurement]) -> list[str]:
    """Formats the measurements and the ratios of COMPARISONS."""
    lines = [f"{'task':<16}{'task s':>10}{'process s':>12}{'peak RSS GB':>14}"]
    for result in results:
        lines.append(
            f"{result.task:<16}{result.seconds:>10.2f}{result.process_seconds:>12.2f}{result.peak_rss / 1e9:>14.2f}"
        )
    for result in results:
        if "build_and_trace_seconds" in result.detail:
            seconds = result.detail["build_and_trace_seconds"]
            lines.append(
                f"{result.task}: building both models and tracing took {seconds:.2f}s (imports excluded)"
            )
    best = fastest(results)
    for label, task, baseline_label, baseline in COMPARISONS:
        if task in best and baseline in best:
            time_ratio = best[task].seconds / best[baseline].seconds
            rss_ratio = best[task].peak_rss / best[baseline].peak_rss
            lines.append(f"{label} / {baseline_label}: time x{time_ratio:.2f}, peak RSS x{rss_ratio:.2f}")
    shas = {result.detail.get("sha256") for result in results if result.task == "zoo"}
    if shas:
        lines.append(f"conversions in separate processes gave identical sha256: {len(shas) == 1}")
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path("/tmp/zoo-bench"),
        help="folder for the synthetic checkpoint (5.1 GB)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic values")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each conversion task")
    parser.add_argument("--clean", action="store_true", help="delete the cache folder afterwards")
    parser.add_argument(
        "--skip-real-trace", action="store_true", help="skip the real-weights trace (about 11 GB RSS)"
    )
    parser.add_argument("--json", action="store_true", help="print the measurements as JSON")
    parser.add_argument("--task", choices=sorted(TASKS), help=argparse.SUPPRESS)
    parser.add_argument("task_args", nargs="*", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.task:
        run_child(args.task, args.task_args)
        return
    try:
        source, build, _source_sha256 = ensure_source(args.cache, args.seed)
        results = ([build] if build else []) + run_conversions(
            source, args.cache, args.repeat, args.skip_real_trace
        )
    finally:
        if args.clean:
            shutil.rmtree(args.cache, ignore_errors=True)
    if args.json:
        print(json.dumps([result.__dict__ for result in results], indent=2))
    else:
        print("\n".join(report(results)))


if __name__ == "__main__":
    main()

"""The child side of `ci/bench_convert.py`: what each measured process (other than `zoo convert` and
`cp`) does. Imports are local to each task, so the parent stays light."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]

# MODELS.md's figures for the SDXL UNet; its config comes from the `sdxl.unet` declaration.
EXPECTED_TENSORS, EXPECTED_VALUES = 1680, 2_567_463_684
WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"

Detail = dict[str, Any]


def sdxl_unet_config() -> dict[str, Any]:
    """The full-size upstream UNet config, as `zoo convert sdxl.unet --synthetic full` uses it."""
    sys.path.insert(0, str(REPO_ROOT))
    from converters import registry

    return registry.resolve("sdxl.unet")[0].synthetic_configs("full")["unet"]


def task_idle(_args: list[str]) -> Detail:
    """Imports what `zoo convert` imports, and nothing more."""
    import converters._convert.jobs  # noqa: F401
    import zoo.cli.convert  # noqa: F401

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


def task_build_sgm(args: list[str]) -> Detail:
    """The diffusers UNet file `args[0]` as an original SGM single file `args[1]` (keys renamed only)."""
    from converters._checkpoints import TensorPlan, open_checkpoint, write_safetensors
    from converters.stable_diffusion.original_names import UNET_PREFIX
    from converters.stable_diffusion.original_writer import unet_tensors

    with open_checkpoint(Path(args[0])) as reader:
        header = {key: (reader.shape(key), reader.dtype(key)) for key in reader.keys()}
        plans = [
            TensorPlan(UNET_PREFIX + name, t.shape, t.dtype, _maker(t.make, reader.get, t.inputs[0][1]))
            for name, t in unet_tensors("unet", header).items()
        ]
        summary = write_safetensors(Path(args[1]), plans)
    return {"sha256": summary.sha256, "bytes": summary.byte_count}


def _maker(make: Callable[[list[Any]], Any], get: Callable[[str], Any], key: str) -> Callable[[], Any]:
    return lambda: make([get(key)])


def task_rewrite(args: list[str]) -> Detail:
    """Rewrites `args[0]` into `args[1]` with `load_file` + `save_file`."""
    from safetensors.torch import load_file, save_file

    save_file(load_file(args[0]), args[1])
    return {"bytes": Path(args[1]).stat().st_size}


def task_diffusers_sgm(args: list[str]) -> Detail:
    """diffusers: `from_single_file(args[0])` (config from the folder `args[2]`) + `save_pretrained(args[1])`."""
    import torch
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel

    unet = UNet2DConditionModel.from_single_file(
        args[0], config=args[2], torch_dtype=torch.float16, local_files_only=True
    )
    unet.save_pretrained(args[1])
    written = Path(args[1]) / WEIGHTS_FILE
    detail = {"bytes": written.stat().st_size}
    shutil.rmtree(args[1])
    return detail


def task_trace_meta(_args: list[str]) -> Detail:
    """The full-size SDXL UNet key map: both models built and traced on meta."""
    from converters import registry
    from converters._convert.component import trace_conversion

    conversion = registry.resolve("sdxl.unet")[0]
    traced = trace_conversion(conversion, conversion.synthetic_configs("full"), use_cache=False)
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
    seconds = round(time.perf_counter() - started, 2)
    return {"entries": len(keymap.entries), "build_and_trace_seconds": seconds}


TASKS: dict[str, Callable[[list[str]], Detail]] = {
    "idle": task_idle,
    "build": task_build,
    "build-sgm": task_build_sgm,
    "rewrite": task_rewrite,
    "diffusers-sgm": task_diffusers_sgm,
    "trace-meta": task_trace_meta,
    "trace-real": task_trace_real,
}


def run_child(task: str, args: list[str], root: Path) -> None:
    """Child side: runs a task with the zoo of `root`, prints its duration (start-up excluded) as JSON."""
    sys.path.insert(0, str(root))
    start = time.perf_counter()
    detail = TASKS[task](args)
    print(json.dumps({"seconds": time.perf_counter() - start, "detail": detail}))


__all__ = ["TASKS", "WEIGHTS_FILE", "Detail", "run_child", "sdxl_unet_config"]

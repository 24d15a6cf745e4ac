"""Full-size SDXL UNet parity on CPU in float32 (benchmark, not in the default test run).

Random weights at the real size, 32×32 latents. Never holds both models at once: the diffusers UNet is
built, run and saved to a temporary safetensors file, then freed; our UNet is built on meta, its weights
streamed from that file through the traced key map, and run. Prints the relative error, the times and the
peak RSS of each phase.

    .venv/bin/python ci/bench_parity.py [--name sdxl.unet] [--keep DIR]
"""

from __future__ import annotations

import argparse
import gc
import resource
import tempfile
import time
from pathlib import Path

import torch

from converters import registry
from converters._checkpoints import TensorPlan, open_checkpoint, write_safetensors
from converters._convert.component import trace_conversion
from converters._verify.parity import relative_error
from converters.declaration import upstream_model


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--name", default="sdxl.unet", help="declared conversion (default: sdxl.unet)")
    parser.add_argument(
        "--keep", type=Path, help="folder for the temporary weights file (default: a temp dir)"
    )
    args = parser.parse_args()
    conversion = registry.resolve(args.name)[0]
    configs = conversion.synthetic_configs("full")
    with tempfile.TemporaryDirectory(dir=args.keep) as folder:
        weights = Path(folder) / "upstream.safetensors"
        started = time.perf_counter()
        traced = trace_conversion(conversion, configs)
        print(f"trace on meta: {traced.seconds:.1f}s, peak RSS {peak_rss_gb():.2f} GB")

        started = time.perf_counter()
        torch.manual_seed(0)
        upstream = upstream_model(conversion, configs).eval()
        built = time.perf_counter() - started
        inputs = conversion.example_inputs(traced.config, "cpu", torch.float32)
        started = time.perf_counter()
        with torch.no_grad():
            reference = conversion.run_upstream(upstream, inputs)
        ran = time.perf_counter() - started
        state = upstream.state_dict()
        plans = [TensorPlan(k, tuple(v.shape), v.dtype, lambda v=v: v) for k, v in state.items()]
        write_safetensors(weights, plans)
        del upstream, state, plans
        gc.collect()
        print(f"upstream: build {built:.1f}s, forward {ran:.1f}s, peak RSS {peak_rss_gb():.2f} GB")

        started = time.perf_counter()
        with torch.device("meta"):
            ours = conversion.build_target(traced.config)
        with open_checkpoint(weights) as reader:
            keymap = traced.keymap
            ours.load_state_dict({k: keymap.apply(reader.get, k) for k in keymap.target_keys()}, assign=True)
        loaded = time.perf_counter() - started
        started = time.perf_counter()
        with torch.no_grad():
            output = conversion.run_target(ours.eval(), inputs)
        ran = time.perf_counter() - started
        print(f"ours: build+load {loaded:.1f}s, forward {ran:.1f}s, peak RSS {peak_rss_gb():.2f} GB")
        error = relative_error(output, reference)
        print(f"max relative error (float32, CPU): {error:.3e}  {'OK' if error <= 1e-5 else 'ABOVE 1e-5'}")


if __name__ == "__main__":
    main()

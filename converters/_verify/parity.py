"""Output parity: the upstream model with the source's weights vs our converted model, same inputs.

One model is in memory at a time: the upstream one runs, its outputs are kept, it is freed, then ours
runs. The error is `max|ours - reference| / max|reference|`, per output.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_leaves

from converters._convert.component import open_upstream, trace_conversion
from converters._convert.sources import Source
from converters.declaration import Conversion, upstream_model
from zoo.errors import CoverageError
from zoo.loading import load


@dataclass(frozen=True)
class ParityResult:
    """How far our outputs are from the reference's."""

    name: str
    device: str
    dtype: str
    relative_errors: list[float]
    max_abs_errors: list[float]
    reference_seconds: float
    ours_seconds: float

    @property
    def max_relative_error(self) -> float:
        return max(self.relative_errors)

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "max_relative_error": self.max_relative_error}


def relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    """max |ours - reference| / max |reference| (in float64)."""
    ours64, reference64 = ours.double(), reference.double()
    scale = reference64.abs().max().item() or 1.0
    return (ours64 - reference64).abs().max().item() / scale


def measure_parity(
    conversion: Conversion,
    source: Source,
    output: Path,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> ParityResult:
    """Run the reference (source weights) then ours (converted output) on the same seeded inputs."""
    reference, reference_seconds, config = _run_reference(conversion, source, device, dtype)
    gc.collect()
    model = load(output, device=device, dtype=dtype)
    inputs = _inputs(conversion, config, device, dtype)
    ours, ours_seconds = _timed(lambda: conversion.run_target(model, inputs))
    pairs = list(zip(_tensors(ours), reference, strict=True))
    return ParityResult(
        conversion.name,
        device,
        str(dtype).removeprefix("torch."),
        [relative_error(a, b) for a, b in pairs],
        [(a.double() - b.double()).abs().max().item() for a, b in pairs],
        reference_seconds,
        ours_seconds,
    )


def _run_reference(
    conversion: Conversion, source: Source, device: str, dtype: torch.dtype
) -> tuple[list[torch.Tensor], float, Any]:
    with open_upstream(conversion, source) as (configs, tensors):
        config = conversion.derive_config(configs)
        with torch.device(device):
            model = upstream_model(conversion, configs)
        state = {key: tensors.get(key) for key in model.state_dict() if key in tensors.tensors}
        _check_loaded(model, state)
        model.load_state_dict(state, strict=False)
    model = model.to(dtype=dtype).eval()
    inputs = _inputs(conversion, config, device, dtype)
    outputs, seconds = _timed(lambda: conversion.run_upstream(model, inputs))
    return [tensor.detach().cpu() for tensor in _tensors(outputs)], seconds, config


def _check_loaded(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    missing = sorted(set(model.state_dict()) - set(state))
    if missing:
        raise CoverageError(
            f"the source lacks {len(missing)} tensor(s) of the reference model", tensor=missing[0]
        )


def _inputs(conversion: Conversion, config: Any, device: str, dtype: torch.dtype) -> Any:
    torch.manual_seed(0)
    return conversion.example_inputs(config, device, dtype)


def _timed(run: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    with torch.no_grad():
        result = run()
    return result, time.perf_counter() - started


def _tensors(outputs: Any) -> list[torch.Tensor]:
    return [leaf.detach().cpu() for leaf in tree_leaves(outputs) if isinstance(leaf, torch.Tensor)]


@dataclass(frozen=True)
class DtypeParity:
    """Ours and upstream in a low-precision dtype, both against upstream in float32 (same weights)."""

    name: str
    device: str
    dtype: str
    upstream_error: float  # upstream in `dtype` vs upstream in float32: the dtype's own error
    ours_error: float  # ours in `dtype` vs upstream in float32
    ours_vs_upstream: float  # ours in `dtype` vs upstream in `dtype`
    seconds: float
    peak_memory_bytes: int | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def random_weight_parity(
    conversion: Conversion, size: str, device: str, dtype: torch.dtype, seed: int = 0
) -> DtypeParity:
    """Random upstream weights, converted in memory through the traced key map; no file is written.

    The tolerance for `dtype` comes from the upstream model itself: its own error against float32.
    """
    started = time.perf_counter()
    configs = conversion.synthetic_configs(size)  # pyright: ignore[reportArgumentType]
    traced = trace_conversion(conversion, configs)
    torch.manual_seed(seed)
    with torch.device(device):
        upstream = upstream_model(conversion, configs).eval()
    inputs32 = conversion.example_inputs(traced.config, device, torch.float32)
    with torch.no_grad():
        reference = _tensors(conversion.run_upstream(upstream, inputs32))
        upstream.to(dtype)
        inputs = conversion.example_inputs(traced.config, device, dtype)
        upstream_low = _tensors(conversion.run_upstream(upstream, inputs))
    state = upstream.state_dict()
    with torch.device("meta"):
        ours = conversion.build_target(traced.config)
    ours.load_state_dict(
        {key: traced.keymap.apply(state.__getitem__, key) for key in traced.keymap.target_keys()}, assign=True
    )
    del upstream, state
    gc.collect()
    with torch.no_grad():
        ours_low = _tensors(conversion.run_target(ours.eval(), inputs))
    peak = torch.cuda.max_memory_allocated() if device.startswith("cuda") else None
    return DtypeParity(
        conversion.name,
        device,
        str(dtype).removeprefix("torch."),
        max(relative_error(a, b) for a, b in zip(upstream_low, reference, strict=True)),
        max(relative_error(a, b) for a, b in zip(ours_low, reference, strict=True)),
        max(relative_error(a, b) for a, b in zip(ours_low, upstream_low, strict=True)),
        time.perf_counter() - started,
        peak,
    )


__all__ = ["DtypeParity", "ParityResult", "measure_parity", "random_weight_parity", "relative_error"]

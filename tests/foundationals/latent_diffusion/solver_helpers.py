"""Shared by the solver tests: real scheduler configs, the diffusers class each solver reproduces, a fake model."""

from __future__ import annotations

import math
from typing import Any

import torch
from diffusers.schedulers.scheduling_ddim import DDIMScheduler
from diffusers.schedulers.scheduling_dpmsolver_multistep import DPMSolverMultistepScheduler
from diffusers.schedulers.scheduling_euler_ancestral_discrete import EulerAncestralDiscreteScheduler
from diffusers.schedulers.scheduling_euler_discrete import EulerDiscreteScheduler

from converters.sd15.scheduler import SCHEDULER as SD15_PIPELINE_SCHEDULER
from converters.sdxl.scheduler import SCHEDULER as SDXL_PIPELINE_SCHEDULER
from zoo.foundationals.latent_diffusion.solvers import (
    DDIM,
    SOLVERS,
    DPMSolverPlusPlus2M,
    Euler,
    EulerAncestral,
    Solver,
)

# `scheduler/scheduler_config.json` of the pinned SD 1.5, SDXL base and SD 2.1 (768, v-prediction) pipelines.
SD15_SCHEDULER: dict[str, Any] = SD15_PIPELINE_SCHEDULER  # the declarations' copies of the Hub files
SDXL_SCHEDULER: dict[str, Any] = SDXL_PIPELINE_SCHEDULER
SD21_SCHEDULER: dict[str, Any] = {
    "_class_name": "DDIMScheduler",
    "_diffusers_version": "0.8.0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "prediction_type": "v_prediction",
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
}

# The diffusers scheduler each solver reproduces. A solver missing here fails its tests (KeyError).
REFERENCE_CLASSES: dict[type[Solver[Any]], Any] = {
    DDIM: DDIMScheduler,
    Euler: EulerDiscreteScheduler,
    EulerAncestral: EulerAncestralDiscreteScheduler,
    DPMSolverPlusPlus2M: DPMSolverMultistepScheduler,
}

LATENT_SHAPE = (2, 4, 8, 8)


def reference_scheduler(name: str, scheduler_config: dict[str, Any], steps: int, first_step: int = 0) -> Any:
    """The diffusers scheduler for the solver called `name`, configured as diffusers' pipelines do it.

    `first_step` is given to `set_begin_index` (step i is then the i-th timestep, as the SDXL pipeline
    sets it; without it, diffusers looks the first timestep up and starts one step late when that
    timestep is repeated, e.g. with cosine betas and Karras sigmas). DDIM has no step index.
    """
    entry = SOLVERS[name]
    scheduler = REFERENCE_CLASSES[entry.solver].from_config(scheduler_config, **entry.options)
    scheduler.set_timesteps(steps)
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(first_step)
    return scheduler


def saved_config(scheduler_class: Any, scheduler_config: dict[str, Any]) -> dict[str, Any]:
    """The config `scheduler_class` saves after reading `scheduler_config` (it lists the defaults it used)."""
    return dict(scheduler_class.from_config(scheduler_config).config)


class FakeModel:
    """A deterministic stand-in for a UNet: mixes channels and depends on the timestep like an embedding.

    The timestep enters through sines of frequencies from 1 down to 1e-4, as a UNet's timestep
    embedding does, so a timestep off by one float32 step shows in the output as it would in a UNet's.
    """

    def __init__(self, channels: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.mix = torch.randn(channels, channels, generator=generator) / channels**0.5
        self.shift = torch.randn(channels, generator=generator)
        self.frequencies = torch.logspace(0, -4, channels, dtype=torch.float64)

    def __call__(self, x: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        phase = torch.sin(float(timestep) * self.frequencies).to(x.dtype)
        mixed = torch.einsum("ij,bjhw->bihw", self.mix.to(x.dtype), x)
        return torch.tanh(mixed + (self.shift.to(x.dtype) * phase)[None, :, None, None])


def relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    """max|ours - reference| / max|reference| over the entries that are numbers.

    NaNs must sit at the same places in both (diffusers itself makes some: Euler ancestral with cosine
    betas takes the root of a negative float32 rounding error); if they do not, the error is infinite.
    """
    ours, reference = ours.double(), reference.double()
    if not torch.equal(ours.isnan(), reference.isnan()):
        return math.inf
    numbers = ~reference.isnan()
    if not numbers.any():
        return 0.0
    difference = (ours[numbers] - reference[numbers]).abs().max()
    scale = reference[numbers].abs().max()
    return (difference / scale if scale > 0 else difference).item()

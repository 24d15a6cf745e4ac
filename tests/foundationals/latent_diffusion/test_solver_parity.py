"""Every named solver against the diffusers scheduler it reproduces, configured from the same file.

Both are driven by the same fake model from the same seeded latent (and, for ancestral sampling, the
same seeded CPU generator); timesteps, the starting noise scale, every scaled model input and every
step's output must agree (float32, relative error <= 1e-6).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from diffusers.schedulers.scheduling_euler_discrete import EulerDiscreteScheduler
from solver_helpers import (  # pyright: ignore[reportMissingImports]
    LATENT_SHAPE,
    SD15_SCHEDULER,
    SD21_SCHEDULER,
    SDXL_SCHEDULER,
    FakeModel,
    reference_scheduler,
    relative_error,
    saved_config,
)

from zoo.errors import ConfigError
from zoo.foundationals.latent_diffusion.solvers import SOLVERS, Solver

TOLERANCE = 1e-6
SEED = 0

MAIN_CONFIGS: dict[str, dict[str, Any]] = {
    "sd15": SD15_SCHEDULER,
    "sdxl": SDXL_SCHEDULER,
    "v_prediction": SD21_SCHEDULER,
}

# One option changed at a time, each read by at least one solver (the others ignore it, as diffusers does).
OPTION_CONFIGS: dict[str, dict[str, Any]] = {
    "sd15_file_without_clip_sample": {k: v for k, v in SD15_SCHEDULER.items() if k != "clip_sample"},
    "trailing": {**SDXL_SCHEDULER, "timestep_spacing": "trailing"},
    "linspace": {**SDXL_SCHEDULER, "timestep_spacing": "linspace"},
    "no_steps_offset": {**SDXL_SCHEDULER, "steps_offset": 0},
    "linear_betas_all_defaults": {"_class_name": "DDPMScheduler"},
    "cosine_betas": {"beta_schedule": "squaredcos_cap_v2", "timestep_spacing": "leading", "steps_offset": 1},
    "sample_prediction": {**SD15_SCHEDULER, "prediction_type": "sample"},
    "final_sigma_min": {**SDXL_SCHEDULER, "final_sigmas_type": "sigma_min"},
    "log_linear": {**SDXL_SCHEDULER, "interpolation_type": "log_linear"},
    "euler_karras": {**SDXL_SCHEDULER, "use_karras_sigmas": True},
    "karras_bounds": {**SDXL_SCHEDULER, "use_karras_sigmas": True, "sigma_min": 0.1, "sigma_max": 10.0},
    "cosine_karras": {"beta_schedule": "squaredcos_cap_v2", "use_karras_sigmas": True},
    "no_lower_order_final": {**SD15_SCHEDULER, "lower_order_final": False},
    "euler_at_final": {**SD15_SCHEDULER, "euler_at_final": True, "final_sigmas_type": "sigma_min"},
    "set_alpha_to_one": {**SD15_SCHEDULER, "set_alpha_to_one": True},
    "clip_sample_range": {**SD21_SCHEDULER, "clip_sample": True, "clip_sample_range": 0.5},
    "deis_file": {**SD15_SCHEDULER, "_class_name": "DEISMultistepScheduler", "solver_type": "logrho"},
    "unipc_file": {**SD15_SCHEDULER, "_class_name": "UniPCMultistepScheduler", "solver_type": "bh2"},
    # Saved by diffusers: `_use_default_values` lists Euler's defaults (linspace), which DDIM must not take.
    "saved_by_diffusers": saved_config(EulerDiscreteScheduler, SD15_SCHEDULER),
}


def _cases() -> list[Any]:
    main = [(name, config, steps) for config in MAIN_CONFIGS for steps in (1, 4, 25) for name in SOLVERS]
    options = [(name, config, steps) for config in OPTION_CONFIGS for steps in (1, 4, 25) for name in SOLVERS]
    # numpy's arange gives trailing spacing one step more at 61 steps (a timestep of -1).
    quirk = [(name, "trailing", 61) for name in SOLVERS]
    return [pytest.param(*case, id=f"{case[0]}-{case[1]}-{case[2]}") for case in main + options + quirk]


def _scheduler_config(config_name: str) -> dict[str, Any]:
    return {**MAIN_CONFIGS, **OPTION_CONFIGS}[config_name]


def _run_ours(solver: Solver[Any], latent: torch.Tensor, model: FakeModel) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(SEED)
    x, trace = latent * solver.init_noise_sigma, []
    for index, timestep in enumerate(solver.timesteps):
        model_input = solver.scale_model_input(x, index)
        x = solver.step(x, model(model_input, timestep), index, generator=generator)
        trace += [model_input, x]
    return trace


def _run_reference(scheduler: Any, latent: torch.Tensor, model: FakeModel) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(SEED)
    x, trace = latent * scheduler.init_noise_sigma, []
    for timestep in scheduler.timesteps:
        model_input = scheduler.scale_model_input(x, timestep)
        x = scheduler.step(model(model_input, timestep), timestep, x, generator=generator).prev_sample
        trace += [model_input, x]
    return trace


@pytest.mark.parametrize(("name", "config_name", "steps"), _cases())
def test_solver_matches_diffusers(name: str, config_name: str, steps: int) -> None:
    scheduler_config = _scheduler_config(config_name)
    reference = reference_scheduler(name, scheduler_config, steps)
    latent = torch.randn(LATENT_SHAPE, generator=torch.Generator().manual_seed(SEED))
    model = FakeModel(LATENT_SHAPE[1], seed=1)
    try:
        solver = SOLVERS[name].solver.from_scheduler_config(scheduler_config, steps, **SOLVERS[name].options)
    except ConfigError:
        # We refuse at configuration only what diffusers cannot run either.
        with pytest.raises(NotImplementedError):
            _run_reference(reference, latent, model)
        return
    assert solver.timesteps.dtype == reference.timesteps.dtype
    assert torch.equal(solver.timesteps, reference.timesteps)
    assert float(solver.init_noise_sigma) == float(reference.init_noise_sigma)
    ours, theirs = _run_ours(solver, latent, model), _run_reference(reference, latent, model)
    errors = [relative_error(a, b) for a, b in zip(ours, theirs, strict=True)]
    print(f"{name} {config_name} {steps}: final {errors[-1]:.2e}, worst step {max(errors):.2e}")
    assert all(error <= TOLERANCE for error in errors), errors

"""Runs of a solver: steps in order, no state across runs, starting midway, noise, other dtypes."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from diffusers.utils.torch_utils import randn_tensor
from solver_helpers import (  # pyright: ignore[reportMissingImports]
    LATENT_SHAPE,
    SDXL_SCHEDULER,
    FakeModel,
    reference_scheduler,
    relative_error,
)

from zoo.errors import UsageError
from zoo.foundationals.latent_diffusion.solvers import SOLVERS, Solver, gaussian_noise, solver_from_name

TOLERANCE = 1e-6
STEPS = 6


def _latent(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(LATENT_SHAPE, generator=torch.Generator().manual_seed(0)).to(dtype)


def _run(solver: Solver[Any], first: int = 0, generator: Any = None) -> torch.Tensor:
    model, x = FakeModel(LATENT_SHAPE[1], seed=1), _latent()
    for index in range(first, len(solver.timesteps)):
        output = model(solver.scale_model_input(x, index), solver.timesteps[index])
        x = solver.step(x, output, index, generator=generator)
    return x


@pytest.mark.parametrize("name", list(SOLVERS))
def test_back_to_back_runs_give_the_same_latent(name: str) -> None:
    solver = solver_from_name(name, SDXL_SCHEDULER, STEPS)
    first = _run(solver, generator=torch.Generator().manual_seed(3))
    second = _run(solver, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first, second)


@pytest.mark.parametrize("name", list(SOLVERS))
def test_steps_out_of_order_are_an_error(name: str) -> None:
    solver = solver_from_name(name, SDXL_SCHEDULER, STEPS)
    x = _latent()
    solver.step(x, x, 0)
    with pytest.raises(UsageError, match="step 2 out of order"):
        solver.step(x, x, 2)
    with pytest.raises(UsageError, match="step 0 out of order"):
        solver.step(x, x, 0)
    with pytest.raises(UsageError, match="does not exist"):
        solver.scale_model_input(x, STEPS)


def test_an_abandoned_run_is_ended_by_reset() -> None:
    solver = solver_from_name("dpmpp_2m", SDXL_SCHEDULER, STEPS)
    fresh = _run(solver_from_name("dpmpp_2m", SDXL_SCHEDULER, STEPS))
    x = _latent()
    solver.step(x, torch.ones_like(x), 0)
    solver.step(x, torch.ones_like(x), 1)
    solver.reset()
    assert torch.equal(_run(solver), fresh)


@pytest.mark.parametrize("name", list(SOLVERS))
def test_a_run_starting_midway_matches_diffusers_begin_index(name: str) -> None:
    """Image-to-image starts at a later step; diffusers' pipelines say so with `set_begin_index`."""
    first = 2
    entry = SOLVERS[name]
    solver = entry.solver.from_scheduler_config(SDXL_SCHEDULER, STEPS, **entry.options)
    reference = reference_scheduler(name, SDXL_SCHEDULER, STEPS, first_step=first)
    model, x = FakeModel(LATENT_SHAPE[1], seed=1), _latent()
    generator = torch.Generator().manual_seed(5)
    for timestep in reference.timesteps[first:]:
        output = model(reference.scale_model_input(x, timestep), timestep)
        x = reference.step(output, timestep, x, generator=generator).prev_sample
    assert relative_error(_run(solver, first, torch.Generator().manual_seed(5)), x) <= TOLERANCE


@pytest.mark.parametrize("name", list(SOLVERS))
def test_half_precision_run_matches_diffusers(name: str) -> None:
    entry = SOLVERS[name]
    solver = entry.solver.from_scheduler_config(SDXL_SCHEDULER, STEPS, **entry.options)
    reference = reference_scheduler(name, SDXL_SCHEDULER, STEPS)
    model = FakeModel(LATENT_SHAPE[1], seed=1)
    ours = theirs = _latent(torch.float16)
    ours_generator, their_generator = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    for index, timestep in enumerate(reference.timesteps):
        ours = solver.step(
            ours, model(solver.scale_model_input(ours, index), timestep), index, ours_generator
        )
        output = model(reference.scale_model_input(theirs, timestep), timestep)
        theirs = reference.step(output, timestep, theirs, generator=their_generator).prev_sample
    assert ours.dtype == theirs.dtype == torch.float16
    assert relative_error(ours, theirs) <= TOLERANCE


def test_ancestral_noise_from_one_generator_per_batch_item_matches_diffusers() -> None:
    solver = solver_from_name("euler_ancestral", SDXL_SCHEDULER, STEPS)
    reference = reference_scheduler("euler_ancestral", SDXL_SCHEDULER, STEPS)
    x, output = _latent(), torch.zeros(LATENT_SHAPE)
    ours = solver.step(x, output, 0, [torch.Generator().manual_seed(seed) for seed in (1, 2)])
    theirs = reference.step(
        output, reference.timesteps[0], x, [torch.Generator().manual_seed(s) for s in (1, 2)]
    )
    assert torch.equal(ours, theirs.prev_sample)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_gaussian_noise_is_diffusers_randn_tensor(dtype: torch.dtype) -> None:
    shape = (3, 4, 5, 6)
    for make in (
        lambda: torch.Generator().manual_seed(11),
        lambda: [torch.Generator().manual_seed(s) for s in (1, 2, 3)],
    ):
        ours = gaussian_noise(shape, make(), "cpu", dtype)
        assert torch.equal(
            ours, randn_tensor(shape, generator=make(), device=torch.device("cpu"), dtype=dtype)
        )


def test_generator_count_must_match_the_batch() -> None:
    with pytest.raises(UsageError, match="2 generators for a batch of 3"):
        gaussian_noise((3, 4), [torch.Generator(), torch.Generator()], "cpu", torch.float32)

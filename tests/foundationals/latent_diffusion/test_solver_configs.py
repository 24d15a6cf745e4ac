"""Reading scheduler configs: every option diffusers reads is handled or refused, bad input is an error."""

from __future__ import annotations

import dataclasses
import inspect
import math
from typing import Any

import pytest
from solver_helpers import REFERENCE_CLASSES, SD15_SCHEDULER, SDXL_SCHEDULER  # pyright: ignore[reportMissingImports]

from zoo.errors import ConfigError
from zoo.foundationals.latent_diffusion.solvers import (
    SOLVERS,
    DDIMConfig,
    DPMSolverConfig,
    Euler,
    EulerConfig,
    Solver,
    SolverConfig,
    read_scheduler_config,
    solver_from_name,
)

SOLVER_CLASSES = sorted({entry.solver for entry in SOLVERS.values()}, key=lambda cls: cls.__name__)


def _diffusers_options(solver: type[Solver[Any]]) -> set[str]:
    parameters = inspect.signature(REFERENCE_CLASSES[solver].__init__).parameters
    return set(parameters) - {"self", "kwargs"}


def _active_value(inert: tuple[Any, ...]) -> Any:
    """A value that enables an option whose inert values are `inert`."""
    first = inert[0]
    if first is None:
        return [0.1, 0.2]
    if isinstance(first, bool):
        return not first
    if isinstance(first, str):
        return "not-" + first
    if isinstance(first, float) and math.isinf(first):
        return -5.0
    return first + 1


def _refused_cases() -> list[Any]:
    return [
        pytest.param(solver, key, _active_value(inert), id=f"{solver.__name__}-{key}")
        for solver in SOLVER_CLASSES
        for key, inert in solver.config_type().inert_options.items()
    ]


@pytest.mark.parametrize("solver", SOLVER_CLASSES, ids=lambda cls: cls.__name__)
def test_every_option_diffusers_reads_is_accounted_for(solver: type[Solver[Any]]) -> None:
    """A diffusers option we neither implement nor refuse would be silently ignored: none may exist."""
    config_type = solver.config_type()
    ours = {field.name for field in dataclasses.fields(config_type)}
    handled = ours | set(config_type.inert_options) | set(config_type.dependent_options)
    assert _diffusers_options(solver) - handled == set()
    # What we refuse or ignore, the diffusers class must read (otherwise diffusers ignores it too).
    assert set(config_type.inert_options) | set(config_type.dependent_options) <= _diffusers_options(solver)


@pytest.mark.parametrize(("solver", "key", "value"), _refused_cases())
def test_enabled_unsupported_option_is_refused_naming_it(
    solver: type[Solver[Any]], key: str, value: Any
) -> None:
    with pytest.raises(ConfigError, match=key):
        solver.from_scheduler_config({**SDXL_SCHEDULER, key: value}, 4)


@pytest.mark.parametrize("solver", SOLVER_CLASSES, ids=lambda cls: cls.__name__)
def test_inert_values_of_unsupported_options_are_accepted(solver: type[Solver[Any]]) -> None:
    inert = {key: values[-1] for key, values in solver.config_type().inert_options.items()}
    solver.from_scheduler_config({**SD15_SCHEDULER, **inert}, 4)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("beta_schedule", "cosine"),
        ("timestep_spacing", "even"),
        ("prediction_type", "flow"),
        ("steps_offset", "1"),
        ("use_karras_sigmas", 1),
        ("beta_end", "0.012"),
        ("final_sigmas_type", None),
    ],
)
def test_invalid_value_is_refused_naming_the_field(key: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=key):
        Euler.from_scheduler_config({**SDXL_SCHEDULER, key: value}, 4)


def test_keys_the_class_does_not_read_are_ignored_as_diffusers_does() -> None:
    config = read_scheduler_config(EulerConfig, {**SD15_SCHEDULER, "made_up_option": 3, "thresholding": True})
    assert config == EulerConfig(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1
    )


def test_missing_fields_take_the_class_defaults() -> None:
    """SD 1.5's file has no timestep_spacing: DDIM falls back to `leading`, DPM-Solver to `linspace`."""
    assert read_scheduler_config(DDIMConfig, SD15_SCHEDULER).timestep_spacing == "leading"
    assert read_scheduler_config(DPMSolverConfig, SD15_SCHEDULER).timestep_spacing == "linspace"


def test_keys_left_at_default_by_another_class_are_dropped() -> None:
    saved = {**SD15_SCHEDULER, "timestep_spacing": "linspace", "_use_default_values": ["timestep_spacing"]}
    assert read_scheduler_config(DDIMConfig, saved).timestep_spacing == "leading"


def test_overrides_replace_the_file_and_must_be_fields() -> None:
    assert read_scheduler_config(EulerConfig, SDXL_SCHEDULER, {"use_karras_sigmas": True}).use_karras_sigmas
    with pytest.raises(ConfigError, match="karras"):
        read_scheduler_config(DDIMConfig, SDXL_SCHEDULER, {"use_karras_sigmas": True})


def test_euler_ancestral_refuses_sample_prediction() -> None:
    with pytest.raises(ConfigError, match="prediction_type"):
        solver_from_name("euler_ancestral", {**SD15_SCHEDULER, "prediction_type": "sample"}, 4)


@pytest.mark.parametrize("steps", [0, -1, 1001])
def test_step_count_out_of_range_is_refused(steps: int) -> None:
    with pytest.raises(ConfigError, match="num_inference_steps"):
        solver_from_name("euler", SDXL_SCHEDULER, steps)


def test_unknown_solver_name_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as error:
        solver_from_name("dpmpp_3m", SDXL_SCHEDULER, 4)
    assert error.value.hint is not None
    assert all(name in error.value.hint for name in SOLVERS)


def test_registry_names_pin_their_options() -> None:
    karras_file = {**SDXL_SCHEDULER, "use_karras_sigmas": True}
    assert not solver_from_name("dpmpp_2m", karras_file, 4).config.use_karras_sigmas
    assert solver_from_name("dpmpp_2m_karras", SDXL_SCHEDULER, 4).config.use_karras_sigmas


def test_direct_construction_validates_too() -> None:
    with pytest.raises(ConfigError, match="beta_schedule"):
        SolverConfig(beta_schedule="cosine")  # pyright: ignore[reportArgumentType]

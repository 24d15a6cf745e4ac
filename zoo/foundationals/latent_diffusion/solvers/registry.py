"""Solvers by name: a solver class and the options its name pins (as in `from_config(file, **options)`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from zoo.errors import ConfigError
from zoo.foundationals.latent_diffusion.solvers.ddim import DDIM
from zoo.foundationals.latent_diffusion.solvers.dpm_solver import DPMSolverPlusPlus2M
from zoo.foundationals.latent_diffusion.solvers.euler import Euler
from zoo.foundationals.latent_diffusion.solvers.euler_ancestral import EulerAncestral
from zoo.foundationals.latent_diffusion.solvers.solver import Solver


@dataclasses.dataclass(frozen=True)
class SolverEntry:
    """A named solver.

    Attributes:
        solver: The solver class.
        options: Config fields the name fixes, over whatever the scheduler config file says.
        description: One line for people choosing a solver.
    """

    solver: type[Solver[Any]]
    options: Mapping[str, Any]
    description: str


SOLVERS: Mapping[str, SolverEntry] = {
    "ddim": SolverEntry(DDIM, {}, "DDIM, deterministic (diffusers DDIMScheduler, eta 0)"),
    "euler": SolverEntry(Euler, {}, "Euler (diffusers EulerDiscreteScheduler)"),
    "euler_ancestral": SolverEntry(
        EulerAncestral,
        {},
        "Euler ancestral, seeded noise each step (diffusers EulerAncestralDiscreteScheduler)",
    ),
    "dpmpp_2m": SolverEntry(
        DPMSolverPlusPlus2M,
        {"use_karras_sigmas": False},
        "DPM-Solver++ 2M (diffusers DPMSolverMultistepScheduler)",
    ),
    "dpmpp_2m_karras": SolverEntry(
        DPMSolverPlusPlus2M, {"use_karras_sigmas": True}, "DPM-Solver++ 2M with Karras sigmas"
    ),
}


def solver_from_name(name: str, scheduler_config: Mapping[str, Any], num_inference_steps: int) -> Solver[Any]:
    """The solver called `name`, configured from a pipeline's `scheduler_config.json` content.

    Raises:
        ConfigError: The name is unknown (the message lists the known ones), or the file enables an
            option the solver does not implement.

    Example:
        >>> solver = solver_from_name("dpmpp_2m_karras", {"beta_schedule": "scaled_linear"}, 20)
        >>> solver.config.use_karras_sigmas
        True
    """
    entry = SOLVERS.get(name)
    if entry is None:
        raise ConfigError(f"unknown solver {name!r}", hint=f"known solvers: {', '.join(SOLVERS)}")
    return entry.solver.from_scheduler_config(scheduler_config, num_inference_steps, **entry.options)


__all__ = ["SOLVERS", "SolverEntry", "solver_from_name"]

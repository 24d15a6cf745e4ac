"""Diffusion solvers: turn a model's prediction into the next latent, exactly as diffusers' schedulers do.

Each solver is configured from a pipeline's `scheduler/scheduler_config.json` content, as diffusers
configures the scheduler class it reproduces with `SchedulerClass.from_config(...)`, or from its typed
config; see `solver` for the denoising loop and `registry` for the names.

| solver | diffusers class |
|---|---|
| `DDIM` | `DDIMScheduler` (eta 0) |
| `Euler` | `EulerDiscreteScheduler` |
| `EulerAncestral` | `EulerAncestralDiscreteScheduler` |
| `DPMSolverPlusPlus2M` | `DPMSolverMultistepScheduler` (`dpmsolver++`, order 2, midpoint) |
"""

from zoo.foundationals.latent_diffusion.solvers.config import SolverConfig, read_scheduler_config
from zoo.foundationals.latent_diffusion.solvers.ddim import DDIM, DDIMConfig
from zoo.foundationals.latent_diffusion.solvers.dpm_solver import DPMSolverConfig, DPMSolverPlusPlus2M
from zoo.foundationals.latent_diffusion.solvers.euler import Euler, EulerConfig
from zoo.foundationals.latent_diffusion.solvers.euler_ancestral import EulerAncestral, EulerAncestralConfig
from zoo.foundationals.latent_diffusion.solvers.noise import Generators, gaussian_noise
from zoo.foundationals.latent_diffusion.solvers.registry import SOLVERS, SolverEntry, solver_from_name
from zoo.foundationals.latent_diffusion.solvers.solver import Solver

__all__ = [
    "DDIM",
    "SOLVERS",
    "DDIMConfig",
    "DPMSolverConfig",
    "DPMSolverPlusPlus2M",
    "Euler",
    "EulerAncestral",
    "EulerAncestralConfig",
    "EulerConfig",
    "Generators",
    "Solver",
    "SolverConfig",
    "SolverEntry",
    "gaussian_noise",
    "read_scheduler_config",
    "solver_from_name",
]

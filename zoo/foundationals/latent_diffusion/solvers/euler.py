"""Euler's method on the probability-flow ODE in sigma (Karras et al. 2022, https://arxiv.org/abs/2206.00364).

Reproduces diffusers' `EulerDiscreteScheduler` (without churn, as pipelines drive it): the latent
lives at noise level sigma, the model sees it scaled to unit variance, and each step follows the
predicted noise direction down to the next sigma.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import torch

from zoo.foundationals.latent_diffusion.solvers.config import FinalSigma, SolverConfig
from zoo.foundationals.latent_diffusion.solvers.noise import Generators
from zoo.foundationals.latent_diffusion.solvers.schedule import alphas_cumprod, training_sigmas
from zoo.foundationals.latent_diffusion.solvers.sigmas import (
    float32_log,
    interpolate,
    karras_sigmas,
    sigma_to_timestep,
)
from zoo.foundationals.latent_diffusion.solvers.solver import Solver
from zoo.foundationals.latent_diffusion.solvers.spacing import spaced_timesteps


@dataclasses.dataclass(frozen=True)
class EulerConfig(SolverConfig):
    """Euler's options, with `EulerDiscreteScheduler`'s defaults.

    Attributes:
        interpolation_type: Sigmas at the timesteps, interpolated from the training ones (`linear`),
            or evenly spaced in log sigma over the whole training range (`log_linear`).
        use_karras_sigmas: Replace the sigmas by Karras' schedule between the extreme ones, and the
            timesteps by those of the new sigmas.
        sigma_min: The Karras schedule's lowest sigma (default: the lowest interpolated one).
        sigma_max: The Karras schedule's highest sigma (default: the highest interpolated one).
        final_sigmas_type: Sigma after the last step: zero, or the first training timestep's.
    """

    interpolation_type: Literal["linear", "log_linear"] = "linear"
    use_karras_sigmas: bool = False
    sigma_min: float | None = None
    sigma_max: float | None = None
    final_sigmas_type: FinalSigma = "zero"

    inert_options: ClassVar[Mapping[str, tuple[Any, ...]]] = {
        **SolverConfig.inert_options,
        "use_exponential_sigmas": (False,),
        "use_beta_sigmas": (False,),
        "timestep_type": ("discrete",),
    }


def euler_schedule(config: EulerConfig, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The timesteps of a `count`-step run and the sigmas before each step and after the last (float32)."""
    table = training_sigmas(alphas_cumprod(config))
    timesteps = torch.tensor(spaced_timesteps(config, count), dtype=torch.float32)
    sigmas = _sigmas_at(config, timesteps, table, count)
    if config.use_karras_sigmas:
        timesteps, sigmas = _karras_schedule(config, sigmas, table, count)
    final = table[0].item() if config.final_sigmas_type == "sigma_min" else 0.0
    return timesteps, torch.tensor([*sigmas, final], dtype=torch.float32)


def _karras_schedule(
    config: EulerConfig, sigmas: list[float], table: torch.Tensor, count: int
) -> tuple[torch.Tensor, list[float]]:
    # Between the extreme sigmas of the spaced timesteps (not of the training table, unlike DPM-Solver).
    sigma_min = config.sigma_min if config.sigma_min is not None else sigmas[-1]
    sigma_max = config.sigma_max if config.sigma_max is not None else sigmas[0]
    karras = karras_sigmas(sigma_min, sigma_max, count)
    log_table = float32_log(table)
    timesteps = [sigma_to_timestep(sigma, log_table) for sigma in karras]
    return torch.tensor(timesteps, dtype=torch.float32), karras


def _sigmas_at(config: EulerConfig, timesteps: torch.Tensor, table: torch.Tensor, count: int) -> list[float]:
    if config.interpolation_type == "linear":
        return interpolate(timesteps.tolist(), table.tolist())
    # diffusers spaces one point more than there are steps here, so the last step ends at the lowest
    # training sigma rather than at the final sigma.
    log_table = float32_log(table)
    return torch.linspace(log_table[-1].item(), log_table[0].item(), count + 1).exp().tolist()


class Euler(Solver[EulerConfig]):
    """Deterministic Euler steps in sigma.

    Example:
        >>> solver = Euler(EulerConfig(timestep_spacing="leading", steps_offset=1), 4)
        >>> solver.timesteps.tolist()
        [751.0, 501.0, 251.0, 1.0]
    """

    def __init__(self, config: EulerConfig, num_inference_steps: int) -> None:
        super().__init__(config, num_inference_steps)
        self.timesteps, self._sigmas = euler_schedule(config, num_inference_steps)

    @classmethod
    def config_type(cls) -> type[EulerConfig]:
        return EulerConfig

    @property
    def init_noise_sigma(self) -> torch.Tensor:
        return sigma_space_init_noise_sigma(self.config, self._sigmas)

    def _scale(self, x: torch.Tensor, step_index: int) -> torch.Tensor:
        return x / ((self._sigmas[step_index] ** 2 + 1) ** 0.5)

    def _step(
        self, x: torch.Tensor, model_output: torch.Tensor, step_index: int, generator: Generators
    ) -> torch.Tensor:
        sigma = self._sigmas[step_index]
        sample = x.to(torch.float32)  # diffusers steps in float32
        clean = predicted_clean(self.config, sample, model_output, sigma)
        derivative = (sample - clean) / sigma
        x_next = sample + derivative * (self._sigmas[step_index + 1] - sigma)
        return x_next.to(model_output.dtype)


def sigma_space_init_noise_sigma(config: SolverConfig, sigmas: torch.Tensor) -> torch.Tensor:
    """The starting noise's standard deviation, as diffusers' sigma-space schedulers give it.

    With `leading` spacing the first timestep sits below the top of the schedule and diffusers uses
    `sqrt(sigma_max² + 1)`; otherwise the highest sigma.
    """
    highest = sigmas.max()
    return highest if config.timestep_spacing in ("linspace", "trailing") else (highest**2 + 1) ** 0.5


def predicted_clean(
    config: SolverConfig, sample: torch.Tensor, model_output: torch.Tensor, sigma: torch.Tensor
) -> torch.Tensor:
    """The clean sample the model predicts from the latent `sample` at noise level `sigma`."""
    if config.prediction_type == "epsilon":
        return sample - sigma * model_output
    if config.prediction_type == "sample":
        return model_output
    return model_output * (-sigma / (sigma**2 + 1) ** 0.5) + (sample / (sigma**2 + 1))


__all__ = ["Euler", "EulerConfig", "euler_schedule", "predicted_clean", "sigma_space_init_noise_sigma"]

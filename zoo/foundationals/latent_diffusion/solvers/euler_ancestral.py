"""Ancestral Euler sampling (Karras et al. 2022; k-diffusion's `sample_euler_ancestral`).

Reproduces diffusers' `EulerAncestralDiscreteScheduler`: each step takes an Euler step down to a
sigma below the next one, then adds fresh noise back up to it. The noise is drawn as diffusers draws
it, so a seeded generator gives the same run.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch

from zoo.foundationals.latent_diffusion.solvers.config import SolverConfig
from zoo.foundationals.latent_diffusion.solvers.euler import (
    EulerConfig,
    euler_schedule,
    predicted_clean,
    sigma_space_init_noise_sigma,
)
from zoo.foundationals.latent_diffusion.solvers.noise import Generators, gaussian_noise
from zoo.foundationals.latent_diffusion.solvers.solver import Solver


@dataclasses.dataclass(frozen=True)
class EulerAncestralConfig(SolverConfig):
    """Ancestral Euler's options, with `EulerAncestralDiscreteScheduler`'s defaults.

    The class reads no Karras, interpolation or final-sigma options: its sigmas are always the training
    ones interpolated linearly, ending at zero.
    """

    # diffusers raises on `sample` at the first step; we refuse it when configured.
    prediction_types: ClassVar[tuple[str, ...]] = ("epsilon", "v_prediction")


class EulerAncestral(Solver[EulerAncestralConfig]):
    """Euler steps in sigma with fresh noise added after each.

    Example:
        >>> solver = EulerAncestral(EulerAncestralConfig(), 2)
        >>> x = torch.ones(1, 4, 2, 2)
        >>> x_next = solver.step(x, torch.zeros_like(x), 0, generator=torch.Generator().manual_seed(0))
        >>> x_next.shape
        torch.Size([1, 4, 2, 2])
    """

    def __init__(self, config: EulerAncestralConfig, num_inference_steps: int) -> None:
        super().__init__(config, num_inference_steps)
        # Euler's schedule at its defaults for the options this class does not read.
        euler_config = EulerConfig(**dataclasses.asdict(config))
        self.timesteps, self._sigmas = euler_schedule(euler_config, num_inference_steps)

    @classmethod
    def config_type(cls) -> type[EulerAncestralConfig]:
        return EulerAncestralConfig

    @property
    def init_noise_sigma(self) -> torch.Tensor:
        return sigma_space_init_noise_sigma(self.config, self._sigmas)

    def _scale(self, x: torch.Tensor, step_index: int) -> torch.Tensor:
        return x / ((self._sigmas[step_index] ** 2 + 1) ** 0.5)

    def _step(
        self, x: torch.Tensor, model_output: torch.Tensor, step_index: int, generator: Generators
    ) -> torch.Tensor:
        sigma, sigma_next = self._sigmas[step_index], self._sigmas[step_index + 1]
        sample = x.to(torch.float32)  # diffusers steps in float32
        clean = predicted_clean(self.config, sample, model_output, sigma)
        # Split the way down to sigma_next into a deterministic part and re-added noise.
        sigma_up = (sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2) ** 0.5
        sigma_down = (sigma_next**2 - sigma_up**2) ** 0.5
        x_next = sample + (sample - clean) / sigma * (sigma_down - sigma)
        noise = gaussian_noise(model_output.shape, generator, model_output.device, model_output.dtype)
        return (x_next + noise * sigma_up).to(model_output.dtype)


__all__ = ["EulerAncestral", "EulerAncestralConfig"]

"""DDIM (Song et al. 2020, https://arxiv.org/abs/2010.02502), deterministic (eta = 0).

Reproduces diffusers' `DDIMScheduler` as Stable Diffusion pipelines drive it (`eta=0`): each step
predicts the clean sample, optionally clips it, and moves to the previous timestep along the
predicted noise.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from zoo.foundationals.latent_diffusion.solvers.config import SolverConfig, TimestepSpacing
from zoo.foundationals.latent_diffusion.solvers.noise import Generators
from zoo.foundationals.latent_diffusion.solvers.schedule import alphas_cumprod
from zoo.foundationals.latent_diffusion.solvers.solver import Solver
from zoo.foundationals.latent_diffusion.solvers.spacing import spaced_timesteps


@dataclasses.dataclass(frozen=True)
class DDIMConfig(SolverConfig):
    """DDIM's options, with `DDIMScheduler`'s defaults.

    Attributes:
        clip_sample: Clip the predicted clean sample to `±clip_sample_range`.
        clip_sample_range: The clipping bound.
        set_alpha_to_one: After the last step, use a cumulative alpha of 1 (no noise left) rather than
            the first training timestep's.
    """

    timestep_spacing: TimestepSpacing = "leading"
    clip_sample: bool = True
    clip_sample_range: float = 1.0
    set_alpha_to_one: bool = True

    inert_options: ClassVar[Mapping[str, tuple[Any, ...]]] = {
        **SolverConfig.inert_options,
        "thresholding": (False,),
    }
    dependent_options: ClassVar[Mapping[str, str]] = {
        "dynamic_thresholding_ratio": "thresholding",
        "sample_max_value": "thresholding",
    }


class DDIM(Solver[DDIMConfig]):
    """Deterministic DDIM steps over integer timesteps.

    Example:
        >>> solver = DDIM(DDIMConfig(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012), 4)
        >>> solver.timesteps.tolist()
        [750, 500, 250, 0]
    """

    def __init__(self, config: DDIMConfig, num_inference_steps: int) -> None:
        super().__init__(config, num_inference_steps)
        self.timesteps = torch.tensor([round(t) for t in spaced_timesteps(config, num_inference_steps)])
        self._alphas_cumprod = alphas_cumprod(config)
        self._final_alpha_cumprod = torch.tensor(1.0) if config.set_alpha_to_one else self._alphas_cumprod[0]
        # diffusers steps back by this stride whatever the spacing.
        self._stride = config.num_train_timesteps // num_inference_steps

    @classmethod
    def config_type(cls) -> type[DDIMConfig]:
        return DDIMConfig

    def _step(
        self, x: torch.Tensor, model_output: torch.Tensor, step_index: int, generator: Generators
    ) -> torch.Tensor:
        timestep = int(self.timesteps[step_index])
        alpha_prod = self._alphas_cumprod[timestep]
        alpha_prod_prev = self._previous_alpha_prod(timestep - self._stride)
        clean, noise = self._clean_and_noise(x, model_output, alpha_prod)
        if self.config.clip_sample:
            clean = clean.clamp(-self.config.clip_sample_range, self.config.clip_sample_range)
        return alpha_prod_prev**0.5 * clean + (1 - alpha_prod_prev) ** 0.5 * noise

    def _previous_alpha_prod(self, previous_timestep: int) -> torch.Tensor:
        if previous_timestep >= 0:
            return self._alphas_cumprod[previous_timestep]
        return self._final_alpha_cumprod

    def _clean_and_noise(
        self, x: torch.Tensor, model_output: torch.Tensor, alpha_prod: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        beta_prod = 1 - alpha_prod
        if self.config.prediction_type == "epsilon":
            return (x - beta_prod**0.5 * model_output) / alpha_prod**0.5, model_output
        if self.config.prediction_type == "sample":
            return model_output, (x - alpha_prod**0.5 * model_output) / beta_prod**0.5
        clean = alpha_prod**0.5 * x - beta_prod**0.5 * model_output
        return clean, alpha_prod**0.5 * model_output + beta_prod**0.5 * x


__all__ = ["DDIM", "DDIMConfig"]

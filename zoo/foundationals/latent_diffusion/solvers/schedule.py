"""The training noise schedule: betas, cumulative alphas and sigmas over the training timesteps.

Computed in float32 with the same torch operations diffusers' schedulers use, so every value is
bit-identical to theirs.
"""

from __future__ import annotations

import math

import torch

from zoo.foundationals.latent_diffusion.solvers.config import SolverConfig

# Glide's cosine schedule (Nichol & Dhariwal 2021, eq. 17): offset s of alpha_bar(t) = cos((t + s) / (1 + s) · π/2)²,
# and the cap on each beta that keeps the last steps from diverging.
COSINE_OFFSET = 0.008
COSINE_MAX_BETA = 0.999


def betas(config: SolverConfig) -> torch.Tensor:
    """The training betas (float32), one per training timestep."""
    count = config.num_train_timesteps
    if config.beta_schedule == "linear":
        return torch.linspace(config.beta_start, config.beta_end, count, dtype=torch.float32)
    if config.beta_schedule == "scaled_linear":
        # Linear in sqrt(beta): the schedule latent diffusion models were trained with.
        return torch.linspace(config.beta_start**0.5, config.beta_end**0.5, count, dtype=torch.float32) ** 2
    return _cosine_betas(count)


def _cosine_betas(count: int) -> torch.Tensor:
    values = [
        min(1 - _cosine_alpha_bar((i + 1) / count) / _cosine_alpha_bar(i / count), COSINE_MAX_BETA)
        for i in range(count)
    ]
    return torch.tensor(values, dtype=torch.float32)


def _cosine_alpha_bar(time: float) -> float:
    return math.cos((time + COSINE_OFFSET) / (1 + COSINE_OFFSET) * math.pi / 2) ** 2


def alphas_cumprod(config: SolverConfig) -> torch.Tensor:
    """The cumulative product of `1 - beta` (float32): the signal variance left at each training timestep."""
    return torch.cumprod(1.0 - betas(config), dim=0)


def training_sigmas(cumulative_alphas: torch.Tensor) -> torch.Tensor:
    """Noise-to-signal ratios `sqrt((1 - ᾱ) / ᾱ)` (float32), increasing with the timestep."""
    return ((1 - cumulative_alphas) / cumulative_alphas) ** 0.5


__all__ = ["alphas_cumprod", "betas", "training_sigmas"]

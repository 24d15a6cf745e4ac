"""Noise levels (sigmas) at inference timesteps, and the Karras schedule with its timesteps.

diffusers computes these with numpy in float64 from float32 training sigmas; the functions here do the
same arithmetic in Python floats, keeping float32 where numpy keeps it, so the results match to the bit.
One step cannot be done without numpy: the float32 log of the training sigmas. numpy's (vectorised,
not correctly rounded) differs from torch's in the last bit for about one value in six, which moves
Karras timesteps by a float32 step and a t-sensitive model's output by ~1e-6; so `float32_log` calls
numpy itself, the only use of numpy at run time (a declared dependency of zoo).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy
import torch

from zoo.foundationals.latent_diffusion.solvers.spacing import numpy_linspace

# The Karras et al. (2022) schedule's exponent: sigmas are evenly spaced in sigma^(1/rho).
KARRAS_RHO = 7.0
# Sigmas are floored before their log is taken, as diffusers does.
LOG_SIGMA_FLOOR = 1e-10


def interpolate(timesteps: Sequence[float], table: Sequence[float]) -> list[float]:
    """`numpy.interp(timesteps, range(len(table)), table)`: values of `table` at fractional indices."""
    return [_interpolate_one(timestep, table) for timestep in timesteps]


def _interpolate_one(position: float, table: Sequence[float]) -> float:
    if position <= 0:
        return table[0]
    if position >= len(table) - 1:
        return table[-1]
    index = math.floor(position)
    if index == position:
        return table[index]
    slope = table[index + 1] - table[index]  # over a unit interval
    return slope * (position - index) + table[index]


def karras_sigmas(sigma_min: float, sigma_max: float, count: int) -> list[float]:
    """`count` sigmas from `sigma_max` down to `sigma_min`, evenly spaced in sigma^(1/rho)."""
    min_inv_rho = sigma_min ** (1 / KARRAS_RHO)
    max_inv_rho = sigma_max ** (1 / KARRAS_RHO)
    ramp = numpy_linspace(0.0, 1.0, count)
    return [(max_inv_rho + fraction * (min_inv_rho - max_inv_rho)) ** KARRAS_RHO for fraction in ramp]


def float32_log(values: torch.Tensor) -> torch.Tensor:
    """The natural log of float32 CPU `values`, computed by numpy as diffusers computes it."""
    return torch.from_numpy(numpy.log(values.numpy()))


def sigma_to_timestep(sigma: float, log_sigmas: torch.Tensor) -> float:
    """The fractional training timestep whose sigma is `sigma`, interpolating linearly in log sigma.

    Args:
        sigma: A noise level.
        log_sigmas: float32 logs of the training sigmas, increasing with the timestep.
    """
    log_sigma = math.log(max(sigma, LOG_SIGMA_FLOOR))
    low = _last_index_at_or_below(log_sigma, log_sigmas)
    low_value, high_value = log_sigmas[low], log_sigmas[low + 1]
    # The width of the bracket is a float32 difference, as in numpy.
    weight = (low_value.item() - log_sigma) / (low_value - high_value).item()
    weight = min(max(weight, 0.0), 1.0)
    return (1 - weight) * low + weight * (low + 1)


def _last_index_at_or_below(log_sigma: float, log_sigmas: torch.Tensor) -> int:
    # diffusers takes the first maximum of the running count of training log sigmas at or below
    # `log_sigma` (0 when there is none), then keeps one bracket inside the table.
    counts = (log_sigma - log_sigmas.double() >= 0).cumsum(dim=0)
    return min(int(counts.argmax().item()), log_sigmas.shape[0] - 2)


__all__ = ["float32_log", "interpolate", "karras_sigmas", "sigma_to_timestep"]

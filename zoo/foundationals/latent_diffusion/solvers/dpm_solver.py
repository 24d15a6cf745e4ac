"""DPM-Solver++ 2M (Lu et al. 2022, https://arxiv.org/abs/2211.01095), the multistep second-order solver.

Reproduces diffusers' `DPMSolverMultistepScheduler` with `algorithm_type="dpmsolver++"`,
`solver_order=2` and the midpoint update: each step converts the prediction to a clean-sample
estimate and combines it with the previous step's estimate. A run's first step is first order, and so
is its last when the final sigma is zero, `euler_at_final` is set, or `lower_order_final` is set and
the run is shorter than 15 steps.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

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

# diffusers lowers the order of the last steps only for runs shorter than this.
LOWER_ORDER_FINAL_MAX_STEPS = 15


@dataclasses.dataclass(frozen=True)
class DPMSolverConfig(SolverConfig):
    """DPM-Solver++ 2M's options, with `DPMSolverMultistepScheduler`'s defaults.

    Attributes:
        use_karras_sigmas: Use Karras' sigmas between the extreme training ones, and their (rounded)
            timesteps.
        sigma_min: The Karras schedule's lowest sigma (default: the lowest training sigma). diffusers'
            class does not take it, but reads it from a config file that has it (an Euler file).
        sigma_max: The Karras schedule's highest sigma (default: the highest training sigma); as above.
        final_sigmas_type: Sigma after the last step: zero, or the first training timestep's.
        lower_order_final: Use first order on the last step of runs shorter than 15 steps.
        euler_at_final: Use first order (Euler) on the last step.
    """

    use_karras_sigmas: bool = False
    sigma_min: float | None = None
    sigma_max: float | None = None
    final_sigmas_type: FinalSigma = "zero"
    lower_order_final: bool = True
    euler_at_final: bool = False

    inert_options: ClassVar[Mapping[str, tuple[Any, ...]]] = {
        **SolverConfig.inert_options,
        # This solver is DPM-Solver++ 2M, midpoint; diffusers maps UniPC's and DEIS's solver types to midpoint.
        "algorithm_type": ("dpmsolver++",),
        "solver_order": (2,),
        "solver_type": ("midpoint", "logrho", "bh1", "bh2"),
        "thresholding": (False,),
        "variance_type": (None,),
        "lambda_min_clipped": (-float("inf"),),
        "use_exponential_sigmas": (False,),
        "use_beta_sigmas": (False,),
        "use_lu_lambdas": (False,),
        "use_flow_sigmas": (False,),
        "use_dynamic_shifting": (False,),
    }
    dependent_options: ClassVar[Mapping[str, str]] = {
        "dynamic_thresholding_ratio": "thresholding",
        "sample_max_value": "thresholding",
        "flow_shift": "use_flow_sigmas",
        "time_shift_type": "use_dynamic_shifting",
    }


def dpm_schedule(config: DPMSolverConfig, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The integer timesteps of a `count`-step run, and the sigmas before each step and after the last."""
    table = training_sigmas(alphas_cumprod(config))
    if config.use_karras_sigmas:
        sigmas = _karras_sigmas(config, table, count)
        log_table = float32_log(table)
        timesteps = [sigma_to_timestep(sigma, log_table) for sigma in sigmas]
        if config.beta_schedule != "squaredcos_cap_v2":  # diffusers keeps cosine ones fractional
            timesteps = [float(round(timestep)) for timestep in timesteps]
    else:
        timesteps = _spaced(config, count)
        sigmas = interpolate(timesteps, table.tolist())
    final = table[0].item() if config.final_sigmas_type == "sigma_min" else 0.0
    # Fractional timesteps are truncated to integers, as diffusers' cast does.
    timesteps_tensor = torch.tensor(timesteps, dtype=torch.float64).to(torch.int64)
    return timesteps_tensor, torch.tensor([*sigmas, final], dtype=torch.float32)


def _spaced(config: DPMSolverConfig, count: int) -> list[float]:
    if config.timestep_spacing == "trailing":
        return spaced_timesteps(config, count)
    # diffusers spaces one point more and drops the last (lowest) one.
    return [float(round(timestep)) for timestep in spaced_timesteps(config, count + 1)][:-1]


def _karras_sigmas(config: DPMSolverConfig, table: torch.Tensor, count: int) -> list[float]:
    sigma_min = config.sigma_min if config.sigma_min is not None else table[0].item()
    sigma_max = config.sigma_max if config.sigma_max is not None else table[-1].item()
    return karras_sigmas(sigma_min, sigma_max, count)


class DPMSolverPlusPlus2M(Solver[DPMSolverConfig]):
    """DPM-Solver++ 2M: second-order multistep, keeping the previous step's clean-sample estimate.

    Example:
        >>> solver = DPMSolverPlusPlus2M(DPMSolverConfig(timestep_spacing="leading", steps_offset=1), 4)
        >>> solver.timesteps.tolist()
        [801, 601, 401, 201]
    """

    def __init__(self, config: DPMSolverConfig, num_inference_steps: int) -> None:
        super().__init__(config, num_inference_steps)
        self.timesteps, self._sigmas = dpm_schedule(config, num_inference_steps)
        self._previous_clean: torch.Tensor | None = None

    @classmethod
    def config_type(cls) -> type[DPMSolverConfig]:
        return DPMSolverConfig

    def _start_run(self) -> None:
        self._previous_clean = None

    def _step(
        self, x: torch.Tensor, model_output: torch.Tensor, step_index: int, generator: Generators
    ) -> torch.Tensor:
        clean = self._predicted_clean(x, model_output, step_index)
        sample = x.to(torch.float32)  # diffusers steps in float32
        if self._previous_clean is None or self._last_step_is_first_order(step_index):
            x_next = self._first_order(sample, clean, step_index)
        else:
            x_next = self._second_order(sample, clean, self._previous_clean, step_index)
        self._previous_clean = clean
        return x_next.to(model_output.dtype)

    def _last_step_is_first_order(self, step_index: int) -> bool:
        config = self.config
        short_run = config.lower_order_final and len(self.timesteps) < LOWER_ORDER_FINAL_MAX_STEPS
        first_order = config.euler_at_final or short_run or config.final_sigmas_type == "zero"
        return step_index == len(self.timesteps) - 1 and first_order

    def _predicted_clean(self, x: torch.Tensor, model_output: torch.Tensor, step_index: int) -> torch.Tensor:
        if self.config.prediction_type == "sample":
            return model_output
        alpha, sigma = _alpha_sigma(self._sigmas[step_index])
        if self.config.prediction_type == "epsilon":
            return (x - sigma * model_output) / alpha
        return alpha * x - sigma * model_output

    def _first_order(self, sample: torch.Tensor, clean: torch.Tensor, step_index: int) -> torch.Tensor:
        alpha_t, sigma_t = _alpha_sigma(self._sigmas[step_index + 1])
        alpha_s, sigma_s = _alpha_sigma(self._sigmas[step_index])
        h = _log_snr(alpha_t, sigma_t) - _log_snr(alpha_s, sigma_s)
        return (sigma_t / sigma_s) * sample - (alpha_t * (torch.exp(-h) - 1.0)) * clean

    def _second_order(
        self, sample: torch.Tensor, clean: torch.Tensor, previous_clean: torch.Tensor, step_index: int
    ) -> torch.Tensor:
        alpha_t, sigma_t = _alpha_sigma(self._sigmas[step_index + 1])
        alpha_s0, sigma_s0 = _alpha_sigma(self._sigmas[step_index])
        alpha_s1, sigma_s1 = _alpha_sigma(self._sigmas[step_index - 1])
        lambda_s0 = _log_snr(alpha_s0, sigma_s0)
        h = _log_snr(alpha_t, sigma_t) - lambda_s0
        ratio = (lambda_s0 - _log_snr(alpha_s1, sigma_s1)) / h
        difference = (1.0 / ratio) * (clean - previous_clean)
        decay = alpha_t * (torch.exp(-h) - 1.0)
        return (sigma_t / sigma_s0) * sample - decay * clean - 0.5 * decay * difference


def _alpha_sigma(sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # From the noise-to-signal ratio to the variance-preserving signal and noise scales.
    alpha = 1 / ((sigma**2 + 1) ** 0.5)
    return alpha, sigma * alpha


def _log_snr(alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    return torch.log(alpha) - torch.log(sigma)


__all__ = ["DPMSolverConfig", "DPMSolverPlusPlus2M", "dpm_schedule"]

"""What every solver offers: timesteps, input scaling, and one step of the reverse diffusion.

A solver holds no model. For a run of `len(solver.timesteps)` steps, a denoising loop reads:

    x = gaussian_noise(shape, generator, device, dtype) * solver.init_noise_sigma
    for index, timestep in enumerate(solver.timesteps):
        prediction = unet(solver.scale_model_input(x, index), timestep)
        x = solver.step(x, prediction, index, generator=generator)

Steps of a run must come in order. A run may begin at any step (image-to-image starts midway) and
ends after the last one, so back-to-back runs need nothing in between; a run abandoned midway must
be ended with `reset()` before another begins. Multistep state never crosses from one run to the next.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, Generic, Self, TypeVar

import torch

from zoo.errors import ConfigError, UsageError
from zoo.foundationals.latent_diffusion.solvers.config import SolverConfig, read_scheduler_config
from zoo.foundationals.latent_diffusion.solvers.noise import Generators

ConfigT = TypeVar("ConfigT", bound=SolverConfig)


class Solver(ABC, Generic[ConfigT]):
    """Base of the solvers: a fixed schedule of `num_inference_steps` steps, and the order they run in.

    Attributes:
        config: The solver's config.
        num_inference_steps: The step count asked for.
        timesteps: The model timestep of each step, noisiest first, as diffusers gives them (its dtype
            too). Usually `num_inference_steps` long; see `spacing` for the one exception.
    """

    timesteps: torch.Tensor

    def __init__(self, config: ConfigT, num_inference_steps: int) -> None:
        if not 1 <= num_inference_steps <= config.num_train_timesteps:
            raise ConfigError(
                f"{type(self).__name__}: num_inference_steps={num_inference_steps} is out of range",
                hint=f"use 1 to {config.num_train_timesteps} steps",
            )
        self.config = config
        self.num_inference_steps = num_inference_steps
        self._next_step: int | None = None

    @classmethod
    @abstractmethod
    def config_type(cls) -> type[ConfigT]:
        """The class of this solver's config."""

    @classmethod
    def from_scheduler_config(
        cls, scheduler_config: Mapping[str, Any], num_inference_steps: int, **overrides: Any
    ) -> Self:
        """The solver a diffusers `scheduler_config.json` gives, as `from_config` + `set_timesteps` would.

        Args:
            scheduler_config: The file's content, from any scheduler class.
            num_inference_steps: The number of steps of a run.
            **overrides: Config fields replacing the file's values (e.g. `use_karras_sigmas=True`).

        Raises:
            ConfigError: The file enables an option we do not implement, or holds an invalid value.
        """
        config = read_scheduler_config(cls.config_type(), scheduler_config, overrides)
        return cls(config, num_inference_steps)

    @property
    def init_noise_sigma(self) -> torch.Tensor:
        """The standard deviation of the starting noise (float32 scalar)."""
        return torch.tensor(1.0)

    def scale_model_input(self, x: torch.Tensor, step_index: int) -> torch.Tensor:
        """The model's input at step `step_index` for the latent `x`."""
        self._check_index(step_index)
        return self._scale(x, step_index)

    def step(
        self, x: torch.Tensor, model_output: torch.Tensor, step_index: int, generator: Generators = None
    ) -> torch.Tensor:
        """The latent after step `step_index`.

        Args:
            x: The latent before the step (not the scaled model input).
            model_output: The model's prediction at this step.
            step_index: The position of this step in `timesteps`.
            generator: The source of the noise that ancestral solvers add; ignored by the others.

        Raises:
            UsageError: The step is not the next one of the run in progress.
        """
        self._check_index(step_index)
        if self._next_step is None:
            self._start_run()
        elif step_index != self._next_step:
            raise UsageError(
                f"{type(self).__name__}: step {step_index} out of order, step {self._next_step} is next",
                hint="call reset() before starting a new run",
            )
        x_next = self._step(x, model_output, step_index, generator)
        self._next_step = step_index + 1 if step_index + 1 < len(self.timesteps) else None
        return x_next

    def reset(self) -> None:
        """End the run in progress, if any: the next step may be any step."""
        self._next_step = None

    def _start_run(self) -> None:
        """Clear the state a multistep solver keeps between the steps of a run."""

    def _scale(self, x: torch.Tensor, step_index: int) -> torch.Tensor:
        return x

    @abstractmethod
    def _step(
        self, x: torch.Tensor, model_output: torch.Tensor, step_index: int, generator: Generators
    ) -> torch.Tensor: ...

    def _check_index(self, step_index: int) -> None:
        if not 0 <= step_index < len(self.timesteps):
            raise UsageError(
                f"{type(self).__name__}: step {step_index} does not exist",
                hint=f"steps are 0 to {len(self.timesteps) - 1}",
            )


__all__ = ["Solver"]

"""Which training timesteps a run visits: `leading`, `linspace` or `trailing` spacing.

diffusers lays timesteps out with numpy's `arange` and `linspace` in float64; the helpers here follow
numpy's arithmetic step by step in Python floats (also float64), so the timesteps are the same numbers,
quirks included: with `trailing` spacing, numpy's `arange` gives one point more for some step counts
(61 of 1000 steps), whose timestep is -1, and diffusers then runs that extra step.
"""

from __future__ import annotations

import math

from zoo.foundationals.latent_diffusion.solvers.config import SolverConfig


def spaced_timesteps(config: SolverConfig, count: int) -> list[float]:
    """`count` training timesteps from the noisiest down, laid out as `config.timestep_spacing` says.

    `leading` and `trailing` give whole numbers; `linspace` does not round (solvers that want whole
    timesteps round them, half to even, as numpy does).
    """
    last = config.num_train_timesteps - 1
    if config.timestep_spacing == "linspace":
        return numpy_linspace(0.0, float(last), count)[::-1]
    if config.timestep_spacing == "leading":
        ratio = config.num_train_timesteps // count
        return [float(index * ratio + config.steps_offset) for index in reversed(range(count))]
    ratio = config.num_train_timesteps / count
    return [round(value) - 1.0 for value in numpy_arange(float(config.num_train_timesteps), 0.0, -ratio)]


def numpy_arange(start: float, stop: float, step: float) -> list[float]:
    """`numpy.arange(start, stop, step)` for floats, value for value.

    numpy counts `ceil((stop - start) / step)` points, and fills them from the first step it actually
    took, `(start + step) - start`, which can differ from `step` in the last bit.
    """
    count = max(math.ceil((stop - start) / step), 0)
    taken = (start + step) - start
    return [
        start if index == 0 else start + step if index == 1 else start + index * taken
        for index in range(count)
    ]


def numpy_linspace(start: float, stop: float, count: int) -> list[float]:
    """`numpy.linspace(start, stop, count)` (endpoint included), value for value."""
    if count == 1:
        return [start]
    step = (stop - start) / (count - 1)
    return [index * step + start for index in range(count - 1)] + [stop]


__all__ = ["numpy_arange", "numpy_linspace", "spaced_timesteps"]

"""The numpy arithmetic diffusers lays schedules out with, redone in Python floats: same numbers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zoo.foundationals.latent_diffusion.solvers.sigmas import float32_log, interpolate, karras_sigmas
from zoo.foundationals.latent_diffusion.solvers.spacing import numpy_arange, numpy_linspace

STEP_COUNTS = range(1, 1001)


def test_arange_matches_numpy_point_for_point() -> None:
    for count in STEP_COUNTS:
        step = -1000 / count
        assert numpy_arange(1000.0, 0.0, step) == np.arange(1000, 0, step).tolist(), count


def test_arange_has_numpy_extra_point() -> None:
    assert len(numpy_arange(1000.0, 0.0, -1000 / 61)) == 62


@pytest.mark.parametrize("stop", [999.0, 1.0, 998.0])
def test_linspace_matches_numpy_point_for_point(stop: float) -> None:
    for count in STEP_COUNTS:
        assert numpy_linspace(0.0, stop, count) == np.linspace(0, stop, count).tolist(), count


def test_interpolate_matches_numpy_interp() -> None:
    table = torch.rand(1000, generator=torch.Generator().manual_seed(0)).tolist()
    grid = torch.linspace(0, 999, 777, dtype=torch.float32).tolist()
    positions = [-1.0, 0.0, 0.5, 998.25, 999.0, 1000.5, *grid]
    assert interpolate(positions, table) == np.interp(positions, np.arange(1000), table).tolist()


def test_karras_sigmas_match_numpy() -> None:
    for count in (1, 2, 25, 1000):
        ramp = np.linspace(0, 1, count)
        expected = (14.6 ** (1 / 7) + ramp * (0.029 ** (1 / 7) - 14.6 ** (1 / 7))) ** 7.0
        assert karras_sigmas(0.029, 14.6, count) == expected.tolist()


def test_float32_log_is_numpy_log() -> None:
    values = torch.rand(10_000, generator=torch.Generator().manual_seed(0)) * 100 + 1e-3
    assert float32_log(values).dtype == torch.float32
    assert torch.equal(float32_log(values), torch.from_numpy(np.log(values.numpy())))

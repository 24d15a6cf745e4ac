"""SD 1.5's `scheduler/scheduler_config.json` as its Hub repository holds it (a PNDM config, which zoo's
solvers read as diffusers' `from_config` does); synthetic sources carry it."""

from __future__ import annotations

from typing import Any

SCHEDULER: dict[str, Any] = {
    "_class_name": "PNDMScheduler",
    "_diffusers_version": "0.6.0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
}

__all__ = ["SCHEDULER"]

"""Solver configs, and how they are read from a diffusers `scheduler/scheduler_config.json`.

Each solver has a frozen config whose field names and defaults are those of the diffusers scheduler
class it reproduces, so a file configures it as `SchedulerClass.from_config(file)` configures that class:

- keys the class does not read are ignored (a PNDM file's `skip_prk_steps` for Euler, say), as are
  private keys (`_class_name`) and the keys a saved config lists in `_use_default_values` (diffusers
  drops those, so the class falls back to its own defaults, not to the other class's);
- a key the class reads but we do not implement is refused with a `ConfigError` naming it, unless its
  value is one under which it changes nothing (`thresholding: false`, `trained_betas: null`); keys that
  only act with such an option enabled (`sample_max_value`) are ignored;
- every value is checked against its field's type, choices included.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, TypeVar

from zoo.errors import ConfigError

BetaSchedule = Literal["linear", "scaled_linear", "squaredcos_cap_v2"]
PredictionType = Literal["epsilon", "sample", "v_prediction"]
TimestepSpacing = Literal["leading", "linspace", "trailing"]
FinalSigma = Literal["zero", "sigma_min"]

C = TypeVar("C", bound="SolverConfig")

# diffusers records, in a config it saves, the keys that were left at their defaults.
_DEFAULTED_KEYS = "_use_default_values"

# Options every one of our schedulers' diffusers classes reads, with the values under which they are inert.
_COMMON_INERT: dict[str, tuple[Any, ...]] = {"trained_betas": (None,), "rescale_betas_zero_snr": (False,)}


@dataclasses.dataclass(frozen=True)
class SolverConfig:
    """The training noise schedule and the timestep layout, shared by every solver.

    Attributes:
        num_train_timesteps: Number of diffusion steps the model was trained with.
        beta_start: First beta of the training schedule.
        beta_end: Last beta of the training schedule.
        beta_schedule: How betas go from `beta_start` to `beta_end` (`squaredcos_cap_v2` ignores both).
        prediction_type: What the model predicts: the noise, the clean sample, or the velocity.
        timestep_spacing: How the inference timesteps are spread over the training ones.
        steps_offset: Added to every timestep with `leading` spacing.
    """

    num_train_timesteps: int = 1000
    beta_start: float = 0.0001
    beta_end: float = 0.02
    beta_schedule: BetaSchedule = "linear"
    prediction_type: PredictionType = "epsilon"
    timestep_spacing: TimestepSpacing = "linspace"
    steps_offset: int = 0

    # diffusers options we do not implement, with the values under which they change nothing.
    inert_options: ClassVar[Mapping[str, tuple[Any, ...]]] = _COMMON_INERT
    # diffusers options that act only with one of those enabled (option -> the one it needs): ignored.
    dependent_options: ClassVar[Mapping[str, str]] = {}
    # The prediction types the reproduced diffusers class accepts.
    prediction_types: ClassVar[tuple[str, ...]] = typing.get_args(PredictionType)

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for field in dataclasses.fields(self):
            _check_value(type(self).__name__, field.name, hints[field.name], getattr(self, field.name))
        if self.prediction_type not in self.prediction_types:
            raise ConfigError(
                f"{type(self).__name__}: prediction_type {self.prediction_type!r} is not supported",
                hint=f"use one of {list(self.prediction_types)}",
            )
        if self.num_train_timesteps < 2:
            raise ConfigError(f"{type(self).__name__}: num_train_timesteps must be at least 2")


def read_scheduler_config(
    config_type: type[C], scheduler_config: Mapping[str, Any], overrides: Mapping[str, Any] | None = None
) -> C:
    """The solver config a diffusers scheduler config gives, as `from_config(scheduler_config, **overrides)`.

    Args:
        config_type: The solver's config class.
        scheduler_config: The content of a `scheduler_config.json` (of any scheduler class).
        overrides: Values replacing the file's, e.g. `{"use_karras_sigmas": True}`; unlike the file's
            keys, each must be a field of `config_type`.

    Returns:
        The config, every field the file does not set left at diffusers' default for the class.

    Raises:
        ConfigError: An option we do not implement is enabled, an override is unknown, or a value is
            not one the field accepts.
    """
    overrides = dict(overrides or {})
    fields = {field.name for field in dataclasses.fields(config_type)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ConfigError(
            f"{config_type.__name__} has no option(s) {unknown}", hint=f"options: {sorted(fields)}"
        )
    entries = {**_public_entries(scheduler_config), **overrides}
    _refuse_active_options(config_type, entries)
    return config_type(**{name: value for name, value in entries.items() if name in fields})


def _public_entries(scheduler_config: Mapping[str, Any]) -> dict[str, Any]:
    defaulted = set(scheduler_config.get(_DEFAULTED_KEYS) or ())
    return {
        key: value
        for key, value in scheduler_config.items()
        if not key.startswith("_") and key not in defaulted
    }


def _refuse_active_options(config_type: type[SolverConfig], entries: Mapping[str, Any]) -> None:
    for key, inert in config_type.inert_options.items():
        if key in entries and not any(_same(entries[key], value) for value in inert):
            raise ConfigError(
                f"{config_type.__name__}: {key}={entries[key]!r} is not supported",
                hint=f"zoo implements {key} only as {' or '.join(repr(value) for value in inert)}",
            )


def _same(value: Any, inert: Any) -> bool:
    # `0 == False` in Python; an inert boolean must be met by a boolean.
    return type(value) is type(inert) and value == inert


def _check_value(owner: str, name: str, hint: Any, value: Any) -> None:
    if not _fits(hint, value):
        raise ConfigError(
            f"{owner}: {name}={value!r} is not a valid value", hint=f"expected {_describe(hint)}"
        )


def _fits(hint: Any, value: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return value in typing.get_args(hint) and isinstance(value, str)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(option, value) for option in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    raise TypeError(f"no check for a config field of type {hint}")


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return f"one of {list(typing.get_args(hint))}"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(option) for option in typing.get_args(hint))
    return "null" if hint is type(None) else hint.__name__


__all__ = [
    "BetaSchedule",
    "FinalSigma",
    "PredictionType",
    "SolverConfig",
    "TimestepSpacing",
    "read_scheduler_config",
]

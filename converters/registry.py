"""Every declared conversion, by name (`family.component`); a family name means all its components."""

from __future__ import annotations

import importlib

from converters.declaration import Conversion
from zoo.errors import ConfigError

# Families and the module declaring each; imported on first use (they pull diffusers/transformers).
FAMILY_MODULES = {"sdxl": "converters.sdxl", "sd15": "converters.sd15"}


def family_conversions(family: str) -> tuple[Conversion, ...]:
    """The conversions a family declares, in its order."""
    module = importlib.import_module(FAMILY_MODULES[family])
    return module.CONVERSIONS


def pipeline_class(family: str) -> str:
    """The diffusers pipeline class a family's synthetic source names in model_index.json."""
    return importlib.import_module(FAMILY_MODULES[family]).PIPELINE_CLASS


def family_variants(family: str) -> tuple[Conversion, ...]:
    """Conversions of a family's variants (another upstream repo), converted only when named."""
    return getattr(importlib.import_module(FAMILY_MODULES[family]), "VARIANTS", ())


def all_conversions() -> dict[str, Conversion]:
    """Every declared conversion by name, variants included."""
    return {
        conversion.name: conversion
        for family in FAMILY_MODULES
        for conversion in (*family_conversions(family), *family_variants(family))
    }


def resolve(name: str) -> list[Conversion]:
    """`sdxl` -> all SDXL components; `sdxl.unet` -> that one; anything else is an error listing names."""
    family = name.split(".", 1)[0]
    if family not in FAMILY_MODULES:
        raise ConfigError(f"unknown conversion {name!r}", hint=f"families: {', '.join(FAMILY_MODULES)}")
    conversions = family_conversions(family)
    if name == family:
        return list(conversions)
    declared = (*conversions, *family_variants(family))
    chosen = [conversion for conversion in declared if conversion.name == name]
    if not chosen:
        names = ", ".join(conversion.name for conversion in declared)
        raise ConfigError(f"unknown conversion {name!r}", hint=f"{family} declares: {names}")
    return chosen


__all__ = [
    "FAMILY_MODULES",
    "all_conversions",
    "family_conversions",
    "family_variants",
    "pipeline_class",
    "resolve",
]

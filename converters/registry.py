"""Every declared family and conversion, by name.

Families register themselves: each package under `converters/` whose name does not start with an
underscore is a family folder (or shared code for several, like `stable_diffusion/`), and importing
it calls `register(Family(...))`. The registry imports those packages on first use, so adding a family
is adding its folder. Nothing here imports diffusers or transformers; a family imports them only when
one of its conversions runs.

Names: `sdxl` is a family (all its conversions), `sdxl.unet` one conversion; `-` and `_` are the same
in a family name (`ip-adapter` is `ip_adapter`).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from converters.declaration import Conversion
from converters.family import Family
from zoo.errors import ConfigError

_PACKAGE = "converters"
_FOLDER = Path(__file__).resolve().parent
_families: dict[str, Family] = {}
_discovered = False


def register(family: Family) -> Family:
    """Add a family (called by its folder on import); its conversions must be named `<family>.*`."""
    if family.name in _families and _families[family.name] is not family:
        raise ConfigError(f"two families named {family.name!r}")
    strays = [c.name for c in family.declared if c.family != family.name]
    if strays:
        raise ConfigError(f"family {family.name!r} declares conversions of another family: {strays}")
    _families[family.name] = family
    return family


def family_packages() -> list[str]:
    """The packages under `converters/` that may register families (no leading underscore)."""
    found = pkgutil.iter_modules([str(_FOLDER)])
    return sorted(info.name for info in found if info.ispkg and not info.name.startswith("_"))


def families() -> Mapping[str, Family]:
    """Every registered family by name (the family folders are imported on the first call)."""
    global _discovered
    if not _discovered:
        for package in family_packages():
            importlib.import_module(f"{_PACKAGE}.{package}")
        _discovered = True
    return MappingProxyType(dict(sorted(_families.items())))


def family(name: str) -> Family:
    """One family by name; an unknown name is an error listing the known ones."""
    known = families()
    key = name.replace("-", "_")
    if key not in known:
        raise ConfigError(f"unknown family {name!r}", hint=f"families: {', '.join(known)}")
    return known[key]


def all_conversions() -> dict[str, Conversion]:
    """Every declared conversion by name, variants included."""
    return {c.name: c for fam in families().values() for c in fam.declared}


def resolve(name: str) -> list[Conversion]:
    """`sdxl` -> the family's conversions; `sdxl.unet` -> that one; anything else is an error."""
    family_name, _, component = name.partition(".")
    found = family(family_name)
    if not component:
        if not found.conversions:
            raise ConfigError(f"family {found.name!r} declares no conversion to run by its name alone")
        return list(found.conversions)
    wanted = f"{found.name}.{component}"
    chosen = [c for c in found.declared if c.name == wanted]
    if not chosen:
        names = ", ".join(c.name for c in found.declared)
        raise ConfigError(f"unknown conversion {name!r}", hint=f"{found.name} declares: {names}")
    return chosen


def family_of(conversion: Conversion) -> Family:
    """The family declaring a conversion."""
    return family(conversion.family)


__all__ = [
    "all_conversions",
    "families",
    "family",
    "family_of",
    "family_packages",
    "register",
    "resolve",
]

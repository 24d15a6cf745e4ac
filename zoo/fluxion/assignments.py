"""Refusing assignments that would silently do something else.

torch turns any module set as an attribute into a child: on a chain, `chain.foo = module` would add a
child that runs in `forward` (and `chain.Linear = other` would swap one behind the chain's back). Once a
chain is built, its children change only through its methods, which keep names, order and parents
right. Adapters go one step further: a public attribute they do not have cannot be created after
construction, so `adapter.sacle = 0.5` raises instead of changing nothing. Inside constructors
everything stays as torch does it.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

from torch import nn

from zoo.fluxion.construction import track_construction, under_construction
from zoo.fluxion.errors import ChainAttributeError
from zoo.fluxion.module import PLAIN_REFERENCES, ContextModule


class GuardedAssignments(ContextModule):
    """Base of `Chain`: after construction, module attributes (and, for adapters, new ones) raise."""

    _rejects_new_attributes: ClassVar[bool] = False
    """Whether a public attribute that does not exist yet is refused after construction (adapters set
    this, so that a misspelt setting raises instead of changing nothing)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        track_construction(cls)

    def __setattr__(self, name: str, value: Any) -> None:
        if not under_construction(self):
            self._check_assignment(name, value)
        super().__setattr__(name, value)

    def __delattr__(self, name: str) -> None:
        if name in self._modules and not under_construction(self):
            raise ChainAttributeError(
                f"`del {type(self).__name__}.{name}` would remove a child behind the chain's back",
                hint=f"use .remove(chain.{name}) or .pop(index), which keep the children's names in order",
            )
        super().__delattr__(name)  # pyright: ignore[reportUnknownMemberType] (torch leaves `name` untyped)

    def _check_assignment(self, name: str, value: object) -> None:
        if isinstance(value, nn.Module) and name not in PLAIN_REFERENCES:
            raise self._module_assignment_error(name, value)
        if self._rejects_new_attributes and not name.startswith("_") and not self._has_attribute(name):
            raise ChainAttributeError(
                f"{type(self).__name__} has no attribute {name!r}: setting it would change nothing",
                hint=f"attributes you can set: {', '.join(self._settable_names()) or 'none'} "
                "(new attributes are created in __init__ only)",
            )

    def _module_assignment_error(self, name: str, value: nn.Module) -> ChainAttributeError:
        what = f"`{type(self).__name__}.{name} = {type(value).__name__}(...)`"
        if name in self._modules:
            return ChainAttributeError(
                f"{what} would swap the child {name!r} behind the chain's back",
                hint=f"use .replace(chain.{name}, new_module), which keeps names and parents right",
            )
        return ChainAttributeError(
            f"{what} would add a child named {name!r} that runs in forward",
            hint="add children with .append(module) or .insert(index, module); to keep a module that "
            "must not run, hold it outside the chain",
        )

    def _has_attribute(self, name: str) -> bool:
        if name in self._modules or name in self._parameters or name in self._buffers:
            return True
        try:
            inspect.getattr_static(self, name)
        except AttributeError:
            return False
        return True

    def _settable_names(self) -> list[str]:
        properties = {
            name
            for cls in type(self).__mro__
            for name, value in vars(cls).items()
            if isinstance(value, property) and value.fset is not None
        }
        return sorted(name for name in properties | set(vars(self)) if not name.startswith("_"))


__all__ = ["GuardedAssignments"]

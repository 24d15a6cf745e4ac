"""The base classes every fluxion layer derives from."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from torch import nn

from zoo.fluxion.context import Context, ContextProvider, active_provider
from zoo.fluxion.errors import FluxionError
from zoo.fluxion.tree import render

if TYPE_CHECKING:
    from zoo.fluxion.chain import Chain

T = TypeVar("T")


class Module(nn.Module):
    """A torch module that knows its device and dtype and can be built on `meta`."""

    @property
    def device(self) -> torch.device:
        """Device of the first parameter or buffer (cpu for a module without tensors)."""
        tensor = first_tensor(self)
        return tensor.device if tensor is not None else torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the first parameter or buffer (the default dtype for a module without tensors)."""
        tensor = first_tensor(self)
        return tensor.dtype if tensor is not None else torch.get_default_dtype()

    def __setattr__(self, name: str, value: Any) -> None:
        # `_parent` and other references to modules that are not children must not be registered as
        # submodules, or they would show up in state_dict and recursion would loop.
        if name in PLAIN_REFERENCES:
            object.__setattr__(self, name, value)
            return
        super().__setattr__(name, value)


PLAIN_REFERENCES = frozenset({"_parent", "_adapter_target"})


def first_tensor(module: nn.Module) -> torch.Tensor | None:
    """The first parameter of `module` (its own or a descendant's), else its first buffer, else None."""
    return next(itertools.chain(module.parameters(), module.buffers()), None)


class ContextModule(Module):
    """A module that sits in a chain: it knows its parent and can read the running model's contexts."""

    _parent: Chain | None = None

    @property
    def parent(self) -> Chain | None:
        """The chain this module was last placed in (None at the top)."""
        return self._parent

    def _set_parent(self, parent: Chain | None) -> None:
        self._parent = parent

    def get_parents(self) -> list[Chain]:
        """Parents from the nearest to the root."""
        parents: list[Chain] = []
        node = self._parent
        while node is not None:
            parents.append(node)
            node = node._parent
        return parents

    def find_parent(self, layer_type: type[T]) -> T | None:
        """The nearest chain above this module that is a `layer_type`, or None.

        Example:
            >>> import zoo.fluxion as fl
            >>> model = fl.Chain(fl.Residual(fl.Chain(fl.SiLU())))
            >>> model.layer("Residual.Chain.SiLU").find_parent(fl.Residual) is model.Residual
            True
        """
        return next((parent for parent in self.get_parents() if isinstance(parent, layer_type)), None)

    def ensure_find_parent(self, layer_type: type[T]) -> T:
        """The nearest chain above this module that is a `layer_type`; an error if there is none."""
        found = self.find_parent(layer_type)
        if found is None:
            raise FluxionError(f"{type(self).__name__} has no {layer_type.__name__} above it")
        return found

    def get_path(self, root: Chain | None = None) -> str:
        """Dotted path from `root` (by default the top of the tree) down to this module.

        It is the path `root.layer(path)` takes and the prefix of this module's keys in
        `root.state_dict()`; the root itself has the path "". A leaf shared by structural copies
        answers for the tree it was first placed in.

        Example:
            >>> import zoo.fluxion as fl
            >>> model = fl.Chain(fl.Linear(2, 2), fl.Chain(fl.SiLU(), fl.Linear(2, 2)))
            >>> model.Chain.Linear.get_path()
            'Chain.Linear'
        """
        names: list[str] = []
        node: ContextModule = self
        while node is not root and node._parent is not None:
            names.append(node._parent.name_of(node))
            node = node._parent
        if root is not None and node is not root:
            raise FluxionError(f"{type(self).__name__} is not inside this {type(root).__name__}")
        return ".".join(reversed(names))

    @property
    def provider(self) -> ContextProvider:
        """The context store in use: the running model's, else the root chain's."""
        running = active_provider()
        if running is not None:
            return running
        parents = self.get_parents()
        root = parents[-1] if parents else None
        if root is None:
            raise RuntimeError(f"{type(self).__name__} is not inside a chain: it has no context")
        return root.provider

    def use_context(self, name: str) -> Context:
        """The context `name` of the running model."""
        return self.provider.get_context(name)

    def structural_copy(self) -> ContextModule:
        """Leaves are shared by structural copies; chains override this to copy themselves."""
        return self

    def __repr__(self) -> str:
        return render(self)


class WeightedModule(ContextModule):
    """A leaf that holds weights (Linear, Conv2d, norms, ...)."""

    weight: torch.Tensor


__all__ = ["ContextModule", "Module", "WeightedModule"]

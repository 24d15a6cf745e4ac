"""The base classes every fluxion layer derives from."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from zoo.fluxion.context import Context, ContextProvider, active_provider
from zoo.fluxion.tree import render

if TYPE_CHECKING:
    from zoo.fluxion.chain import Chain


class Module(nn.Module):
    """A torch module that knows its device and dtype and can be built on `meta`."""

    def _first_tensor(self) -> torch.Tensor | None:
        for tensor in self.parameters():
            return tensor
        for tensor in self.buffers():
            return tensor
        return None

    @property
    def device(self) -> torch.device:
        """Device of the first parameter or buffer (cpu for a module without tensors)."""
        tensor = self._first_tensor()
        return tensor.device if tensor is not None else torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the first parameter or buffer (the default dtype for a module without tensors)."""
        tensor = self._first_tensor()
        return tensor.dtype if tensor is not None else torch.get_default_dtype()

    def __setattr__(self, name: str, value: Any) -> None:
        # `_parent` and other references to modules that are not children must not be registered as
        # submodules, or they would show up in state_dict and recursion would loop.
        if name in PLAIN_REFERENCES:
            object.__setattr__(self, name, value)
            return
        super().__setattr__(name, value)


PLAIN_REFERENCES = frozenset({"_parent", "_adapter_target"})


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

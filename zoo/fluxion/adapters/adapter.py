"""The `Adapter` mixin.

An adapter is a chain that contains its target and takes the target's place in the model. Building one
leaves the model untouched; `inject()` swaps it in, `eject()` puts the target back exactly where it was,
so the model's modules, their order and its `state_dict` are as before. Adapters stack: an adapter can
target another adapter, and they can be ejected in any order.
"""

from __future__ import annotations

from collections.abc import Generator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar, cast

from torch import nn

from zoo.fluxion.chain import Chain
from zoo.fluxion.module import ContextModule

T = TypeVar("T", bound=nn.Module)


class Adapter(Generic[T]):
    """Mixin for a `Chain` subclass that wraps a target module of type `T`.

    Example:
        >>> import torch, zoo.fluxion as fl
        >>> class PlusOne(fl.Chain, fl.Adapter[fl.Linear]):
        ...     def __init__(self, target: fl.Linear) -> None:
        ...         with self.setup_adapter(target):
        ...             super().__init__(target, fl.Multiply(bias=1.0))
        >>> model = fl.Chain(fl.Linear(2, 2), fl.SiLU())
        >>> adapter = PlusOne(model.Linear).inject(model)
        >>> [name for name, _ in model.named_children()]
        ['PlusOne', 'SiLU']
        >>> adapter.eject()
        >>> [name for name, _ in model.named_children()]
        ['Linear', 'SiLU']

    After construction an adapter only takes attributes it already has: `adapter.sacle = 0.5` raises
    rather than creating an attribute nothing reads.
    """

    _adapter_target: T | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A class attribute would lose to Chain's in the MRO (Chain comes first), so set it on each subclass.
        cls._rejects_new_attributes = True

    @contextmanager
    def setup_adapter(self, target: T) -> Generator[None, None, None]:
        """Build the adapter around `target` inside this block; the target keeps its parent."""
        if not isinstance(self, Chain):
            raise TypeError(f"{type(self).__name__}: an Adapter must also be a Chain")
        parent = target.parent if isinstance(target, ContextModule) else None
        try:
            yield
        finally:
            _set_parent(target, parent)
        if _holder_of(self, target) is None:
            raise ValueError(f"{type(self).__name__} must hold its target among its descendants")
        self._adapter_target = target

    @property
    def target(self) -> T:
        """The module this adapter wraps."""
        if self._adapter_target is None:
            raise RuntimeError(f"{type(self).__name__} was built without setup_adapter")
        return self._adapter_target

    @property
    def is_injected(self) -> bool:
        """Whether the adapter currently sits in a model in place of its target."""
        return cast(Chain, self).parent is not None

    def inject(self, parent: Chain | None = None) -> Any:
        """Put this adapter in place of its target in `parent` (by default, the target's parent).

        Returns the adapter itself, so `Adapter(target).inject()` reads as one step.
        """
        me = cast(Chain, self)
        target = self.target
        if parent is None:
            parent = target.parent if isinstance(target, ContextModule) else None
        if parent is None:
            raise ValueError(f"{type(target).__name__} has no parent: pass the chain to inject into")
        if me.parent is not None:
            raise RuntimeError(f"{type(self).__name__} is already injected; eject it first")
        self._retarget_wrapper(parent, old=target, new=me)
        parent.replace(target, me)
        _set_parent(target, _holder_of(me, target))
        return self

    def eject(self) -> None:
        """Put the target back where this adapter is; the adapter stays whole, ready to inject again."""
        me = cast(Chain, self)
        holder = me.parent
        if holder is None:
            raise RuntimeError(f"{type(self).__name__} is not injected")
        target = self.target
        self._retarget_wrapper(holder, old=me, new=target)
        holder.replace(me, target)
        _set_parent(target, holder)

    def _on_structural_copy(self, clone: Chain) -> None:
        # Called by Chain.structural_copy: the copy must point at the copy of the target.
        path = _path_to(cast(Chain, self), self.target)
        copy = cast(Adapter[nn.Module], clone)
        copy._adapter_target = clone.layer(path)

    @staticmethod
    def _retarget_wrapper(start: Chain, old: nn.Module, new: nn.Module) -> None:
        """When adapters are stacked, the outer one's target changes as an inner one comes and goes."""
        node: Chain | None = start
        while node is not None:
            if isinstance(node, Adapter):
                wrapper = cast(Adapter[nn.Module], node)
                if wrapper._adapter_target is old:
                    wrapper._adapter_target = new
                    return
            node = node.parent


def _set_parent(module: nn.Module, parent: Chain | None) -> None:
    # Parent links are private to the tree: only chains (adopting children) and adapters (moving their
    # target in and out) change them.
    if isinstance(module, ContextModule):
        module._set_parent(parent)  # pyright: ignore[reportPrivateUsage]


def _holder_of(root: Chain, module: nn.Module) -> Chain | None:
    """The chain inside `root` (or `root` itself) that holds `module` as a direct child."""
    if any(child is module for child in root):
        return root
    for chain in root.layers(Chain):
        if any(child is module for child in chain):
            return chain
    return None


def _path_to(root: Chain, module: nn.Module) -> list[int]:
    """Child indices leading from `root` to `module`."""
    for position, child in enumerate(root):
        if child is module:
            return [position]
        if isinstance(child, Chain):
            below = _path_to(child, module)
            if below:
                return [position, *below]
    return []


__all__ = ["Adapter"]

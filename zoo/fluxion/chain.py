"""Chains: models as trees of small layers.

A `Chain` runs its children one after the other, passing each one's output to the next. Its children
are named from their class names (`Linear`, or `Linear_1`, `Linear_2` when there are several), so the
keys of a model's `state_dict` follow from its structure alone and are stable across constructions.
The other combinators (`Sum`, `Residual`, `Passthrough`, `Parallel`, `Distribute`, `Concatenate`, in
`combinators.py`) only change how children's inputs and outputs are combined.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar, cast, overload

from torch import nn

from zoo.fluxion.assignments import GuardedAssignments
from zoo.fluxion.context import Context, ContextProvider, Contexts, activate
from zoo.fluxion.failures import located, record
from zoo.fluxion.module import ContextModule

T = TypeVar("T", bound=nn.Module)
Predicate = Callable[[nn.Module, "Chain"], bool]
_Arguments = tuple[Any, ...]  # built once: forward casts to it in its loop, the hot path


class _StructureVersion:
    """Counts changes of chains' children anywhere, so per-tree caches know when to look again."""

    version = 0


_structure = _StructureVersion()


def child_names(modules: Sequence[nn.Module]) -> list[str]:
    """Deterministic names: the class name, with a 1-based counter when the class repeats."""
    counts = Counter(type(module).__name__ for module in modules)
    seen: Counter[str] = Counter()
    names: list[str] = []
    for module in modules:
        base = type(module).__name__
        if counts[base] == 1:
            names.append(base)
        else:
            seen[base] += 1
            names.append(f"{base}_{seen[base]}")
    return names


def _flatten(args: tuple[nn.Module | Iterable[nn.Module], ...]) -> list[nn.Module]:
    modules: list[nn.Module] = []
    for arg in args:
        if isinstance(arg, nn.Module):
            modules.append(arg)
        else:
            modules.extend(arg)
    return modules


class Chain(GuardedAssignments):
    """Runs its children in sequence; a tuple output becomes the next child's positional arguments.

    Example:
        >>> import torch, zoo.fluxion as fl
        >>> model = fl.Chain(fl.Linear(4, 8), fl.SiLU(), fl.Linear(8, 2))
        >>> model(torch.randn(1, 4)).shape
        torch.Size([1, 2])
        >>> [name for name, _ in model.named_children()]
        ['Linear_1', 'SiLU', 'Linear_2']

    Once built, its children change only through `append`, `insert`, `replace`, `remove` and `pop`:
    assigning a module as an attribute (which torch would turn into a child that runs) is an error.
    """

    def __init__(self, *args: nn.Module | Iterable[nn.Module]) -> None:
        super().__init__()
        self._provider = ContextProvider()
        self._set_children(_flatten(args))

    # -- children -----------------------------------------------------------------------------------

    def _set_children(self, modules: list[nn.Module]) -> None:
        if len({id(module) for module in modules}) != len(modules):
            raise ValueError(f"{type(self).__name__}: the same module appears twice among its children")
        _structure.version += 1
        self._modules.clear()
        for name, module in zip(child_names(modules), modules, strict=True):
            self._modules[name] = module
            self._adopt(module)

    def _adopt(self, module: nn.Module) -> None:
        # A chain has exactly one parent. A leaf shared by structural copies keeps its first parent;
        # adapters over leaves therefore take the parent explicitly.
        if isinstance(module, Chain) or (isinstance(module, ContextModule) and module.parent is None):
            module._set_parent(self)

    def _release(self, module: nn.Module) -> None:
        if isinstance(module, ContextModule) and module.parent is self:
            module._set_parent(None)

    @property
    def children_list(self) -> list[nn.Module]:
        """The children, in order (a new list)."""
        return list(self._modules.values())  # pyright: ignore[reportReturnType]

    def __iter__(self) -> Iterator[nn.Module]:
        return iter(self.children_list)

    def __len__(self) -> int:
        return len(self._modules)

    def __bool__(self) -> bool:
        # An empty chain is still a chain: never let `if chain:` mean "has children".
        return True

    @overload
    def __getitem__(self, key: int | str) -> nn.Module: ...
    @overload
    def __getitem__(self, key: slice) -> Chain: ...
    def __getitem__(self, key: int | str | slice) -> nn.Module:
        if isinstance(key, str):
            return self._modules[key]  # pyright: ignore[reportReturnType]
        if isinstance(key, slice):
            return Chain(*(_copy_structure(child) for child in self.children_list[key]))
        return self.children_list[key]

    def __getattr__(self, name: str) -> Any:
        return super().__getattr__(name)

    def name_of(self, module: nn.Module) -> str:
        """Name of a direct child (by identity)."""
        for name, child in self.named_children():
            if child is module:
                return name
        raise ValueError(f"{type(module).__name__} is not a child of {type(self).__name__}")

    def index(self, module: nn.Module) -> int:
        """Position of a direct child (by identity)."""
        for position, child in enumerate(self):
            if child is module:
                return position
        raise ValueError(f"{type(module).__name__} is not a child of {type(self).__name__}")

    # -- editing ------------------------------------------------------------------------------------

    def insert(self, index: int, module: nn.Module) -> None:
        """Insert `module` before position `index` (negative indices count from the end, as in lists)."""
        children = self.children_list
        if index < 0:
            index = max(0, len(children) + index + 1)
        children.insert(index, module)
        self._set_children(children)

    def append(self, module: nn.Module) -> None:
        """Add `module` at the end."""
        self.insert(len(self), module)

    def insert_before_type(self, module_type: type[nn.Module], module: nn.Module) -> None:
        """Insert `module` before the first child of `module_type`."""
        self.insert(self._first_index_of(module_type), module)

    def insert_after_type(self, module_type: type[nn.Module], module: nn.Module) -> None:
        """Insert `module` after the first child of `module_type`."""
        self.insert(self._first_index_of(module_type) + 1, module)

    def _first_index_of(self, module_type: type[nn.Module]) -> int:
        for position, child in enumerate(self):
            if isinstance(child, module_type):
                return position
        raise ValueError(f"{type(self).__name__} has no child of type {module_type.__name__}")

    def pop(self, index: int = -1) -> nn.Module:
        """Remove and return the child at `index`."""
        children = self.children_list
        module = children.pop(index)
        self._set_children(children)
        self._release(module)
        return module

    def remove(self, module: nn.Module) -> None:
        """Remove a direct child."""
        self.pop(self.index(module))

    def replace(self, old_module: nn.Module, new_module: nn.Module) -> None:
        """Put `new_module` where `old_module` is (same position)."""
        children = self.children_list
        children[self.index(old_module)] = new_module
        self._set_children(children)
        self._release(old_module)

    # -- navigation ---------------------------------------------------------------------------------

    @overload
    def walk(
        self, predicate: type[T], recurse: bool = False, prune: type[nn.Module] | Predicate | None = None
    ) -> Iterator[tuple[T, Chain]]: ...
    @overload
    def walk(
        self,
        predicate: Predicate | None = None,
        recurse: bool = False,
        prune: type[nn.Module] | Predicate | None = None,
    ) -> Iterator[tuple[nn.Module, Chain]]: ...
    def walk(
        self,
        predicate: type[nn.Module] | Predicate | None = None,
        recurse: bool = False,
        prune: type[nn.Module] | Predicate | None = None,
    ) -> Iterator[tuple[nn.Module, Chain]]:
        """Yield `(module, parent)` for every descendant that matches, depth first.

        Matches are collected before the first is yielded, so the caller may inject or eject adapters
        while iterating. Without `recurse`, the inside of a match is not searched. A subtree is skipped
        whole (neither matched nor searched) where `prune` matches its top, or where the predicate
        raises `StopIteration`.

        Example:
            >>> import zoo.fluxion as fl
            >>> model = fl.Chain(fl.Linear(2, 2), fl.Residual(fl.Linear(2, 2)), fl.Chain(fl.Linear(2, 2)))
            >>> [parent.get_path() for _, parent in model.walk(fl.Linear, prune=fl.Residual)]
            ['', 'Chain']
        """
        skip = _as_predicate(prune) if prune is not None else _never
        return iter(list(self._walk(_as_predicate(predicate), recurse, skip)))

    def _walk(
        self, predicate: Predicate, recurse: bool, prune: Predicate
    ) -> Iterator[tuple[nn.Module, Chain]]:
        for child in self:
            if prune(child, self):
                continue
            try:
                matched = predicate(child, self)
            except StopIteration:  # Refiners' way to skip a subtree; caught here, before PEP 479 applies
                continue
            if matched:
                yield child, self
            if isinstance(child, Chain) and (recurse or not matched):
                yield from child._walk(predicate, recurse, prune)

    def layers(self, layer_type: type[T], recurse: bool = True) -> Iterator[T]:
        """Every descendant of `layer_type` (only direct children without `recurse`)."""
        for child in self:
            if isinstance(child, layer_type):
                yield child
            if recurse and isinstance(child, Chain):
                yield from child.layers(layer_type)

    def find(self, layer_type: type[T]) -> T | None:
        """The first descendant of `layer_type`, or None."""
        return next(self.layers(layer_type), None)

    def ensure_find(self, layer_type: type[T]) -> T:
        """The first descendant of `layer_type`; an error if there is none."""
        found = self.find(layer_type)
        if found is None:
            raise ValueError(f"no {layer_type.__name__} in {type(self).__name__}")
        return found

    def layer(self, path: str | int | Sequence[str | int], layer_type: type[T] = nn.Module) -> T:
        """The descendant at `path` ("Chain_1.Linear", an index, or a list of both), type-checked."""
        steps: Sequence[str | int] = (
            path.split(".") if isinstance(path, str) else ([path] if isinstance(path, int) else path)
        )
        node: nn.Module = self
        for step in steps:
            if not isinstance(node, Chain):
                raise ValueError(f"{path!r}: {type(node).__name__} has no children")
            node = node[int(step) if isinstance(step, str) and step.lstrip("-").isdigit() else step]
        if not isinstance(node, layer_type):
            raise TypeError(f"{path!r} is a {type(node).__name__}, not a {layer_type.__name__}")
        return node

    def structural_copy(self) -> Chain:
        """A copy of every chain node; the leaves (and so every weight) are shared, not copied."""
        clone = object.__new__(type(self))
        # Shallow-copy every dict (parameters, buffers, hooks) so editing the copy leaves the original.
        clone.__dict__ = {
            key: value.copy() if isinstance(value, dict) else value for key, value in self.__dict__.items()
        }
        clone.__dict__.update(
            _modules={},
            _parent=None,
            _provider=ContextProvider(),
        )
        clone._set_children([_copy_structure(child) for child in self])
        on_copy = getattr(self, "_on_structural_copy", None)  # defined by Adapter
        if on_copy is not None:
            on_copy(clone)
        return clone

    # -- context ------------------------------------------------------------------------------------

    @property
    def root(self) -> Chain:
        """The top of the tree this chain belongs to."""
        parents = self.get_parents()
        return parents[-1] if parents else self

    @property
    def provider(self) -> ContextProvider:
        return self.root._provider

    def init_context(self) -> Contexts:
        """Contexts this chain needs, with their values at the start of every forward."""
        return {}

    def _context_defaults(self) -> Contexts:
        defaults: Contexts = {}
        for chain in self._context_initialisers():
            for name, values in chain.init_context().items():
                defaults.setdefault(name, {}).update(values)
        return defaults

    def _context_initialisers(self) -> list[Chain]:
        """The chains of this tree that override `init_context`, found once per shape of the tree.

        Every forward needs them; walking a full-size UNet's 2,700 modules for them took ~16 ms per
        forward, a GPU step's worth. Any change of any chain's children (adapters included) goes
        through `_set_children`, which bumps the version this cache is keyed on.
        """
        cached: tuple[int, list[Chain]] | None = self.__dict__.get("_initialisers")
        if cached is None or cached[0] != _structure.version:
            found = [c for c in (self, *self.layers(Chain)) if type(c).init_context is not Chain.init_context]
            cached = (_structure.version, found)
            self.__dict__["_initialisers"] = cached
        return cached[1]

    @contextmanager
    def keeping_context(self) -> Generator[ContextProvider, None, None]:
        """Keep the model's contexts across the calls inside the block, so what they store on the way
        (`fl.SetContext`) can be read there; they are forgotten when the outermost such block ends.

        Example:
            >>> import torch, zoo.fluxion as fl
            >>> model = fl.Chain(fl.Multiply(2.0), fl.SetContext("seen", "doubled"), fl.Multiply(3.0))
            >>> with model.keeping_context() as provider:
            ...     output = model(torch.ones(1))
            ...     provider.get_context("seen")["doubled"]
            tensor([2.])
        """
        root = self.root
        with activate(root._provider) as top_level:
            try:
                yield root._provider
            finally:
                if top_level:
                    root._provider.reset(root._context_defaults())

    def set_context(self, name: str, values: Context) -> None:
        """Set a context of the model this chain belongs to, for its next forward."""
        self.provider.update_contexts({name: values})

    # -- running ------------------------------------------------------------------------------------

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        root = self.root
        with activate(root._provider) as top_level:
            if not top_level:
                return super().__call__(*args, **kwargs)
            defaults = root._context_defaults()
            for name, values in defaults.items():
                for key, value in values.items():
                    root._provider.get_context(name).setdefault(key, value)
            try:
                return super().__call__(*args, **kwargs)
            except Exception as error:
                twin = located(error, self, args)
                if twin is None:
                    raise
                raise twin from error
            finally:
                # Forget everything, defaults included: `init_context` builds fresh (mutable) defaults
                # at the start of the next forward, and values set in between are kept for it.
                root._provider.reset({})

    def call_child(self, name: str, child: nn.Module, *args: Any) -> Any:
        """Run one child; if it raises, record where and on what (shown once, by the chain called)."""
        try:
            return child(*args)
        except Exception as error:
            record(error, self, name, child, args)
            raise

    def forward(self, *args: Any) -> Any:
        result: Any = args[0] if len(args) == 1 else args
        for name, child in self.named_children():
            inputs = cast(_Arguments, result) if isinstance(result, tuple) else (result,)
            result = self.call_child(name, child, *inputs)
        return result

    def _outputs(self, *args: Any) -> list[Any]:
        """Every child run on the same inputs."""
        return [self.call_child(name, child, *args) for name, child in self.named_children()]


def _copy_structure(module: nn.Module) -> nn.Module:
    return module.structural_copy() if isinstance(module, ContextModule) else module


def _never(_module: nn.Module, _parent: Chain) -> bool:
    return False


def _as_predicate(predicate: type[nn.Module] | Predicate | None) -> Predicate:
    if predicate is None:
        return lambda _module, _parent: True
    if isinstance(predicate, type):
        module_type = predicate
        return lambda module, _parent: isinstance(module, module_type)
    return predicate


__all__ = ["Chain", "child_names"]

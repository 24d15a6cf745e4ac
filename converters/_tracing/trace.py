"""Record which modules hold tensors, in the order a forward pass first calls them.

Tracing finds where each upstream tensor goes without writing key names down: the source and
the target model run the same example inputs (on ``meta``: no weights, no compute), every module
that directly holds a parameter or a persistent buffer is noted when it is first called, and
aligning the two orders gives the key map (see :mod:`converters._tracing.align`).

Works on any :class:`torch.nn.Module`; nothing here knows about a model family.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

Shape = tuple[int, ...]


@dataclass(frozen=True)
class TracedTensor:
    """A tensor that a module holds directly.

    Attributes:
        local_name: Its name inside the module (``weight``, ``in_proj_bias``).
        shape: Its shape.
    """

    local_name: str
    shape: Shape


@dataclass(frozen=True)
class TracedModule:
    """A module that directly holds parameters or persistent buffers.

    Attributes:
        name: Its qualified name in the model (``""`` for the root).
        type_name: Its class name, for reports.
        tensors: Its parameters then its persistent buffers, in registration order.
    """

    name: str
    type_name: str
    tensors: tuple[TracedTensor, ...]

    def key(self, local_name: str) -> str:
        """The state-dict key of one of this module's tensors."""
        return f"{self.name}.{local_name}" if self.name else local_name

    def keys(self) -> tuple[str, ...]:
        """The state-dict keys of this module's tensors, in order."""
        return tuple(self.key(tensor.local_name) for tensor in self.tensors)

    def keep(self, keys: Callable[[str], bool]) -> TracedModule:
        """A copy holding only the tensors whose full key passes ``keys``."""
        kept = tuple(tensor for tensor in self.tensors if keys(self.key(tensor.local_name)))
        return TracedModule(self.name, self.type_name, kept)


@dataclass(frozen=True)
class Trace:
    """The tensor-holding modules of a model, split by whether the traced run called them.

    Attributes:
        modules: The modules that ran, in the order they were first called.
        not_run: The modules that hold tensors but were never called (their tensors may still
            be used, e.g. a projection weight passed to ``F.linear`` by its parent), in
            registration order.
    """

    modules: tuple[TracedModule, ...]
    not_run: tuple[TracedModule, ...]

    def keys(self) -> tuple[str, ...]:
        """The state-dict keys of the modules that ran, in execution order."""
        return tuple(key for module in self.modules for key in module.keys())

    def not_run_keys(self) -> tuple[str, ...]:
        """The state-dict keys of the modules that never ran."""
        return tuple(key for module in self.not_run for key in module.keys())


def held_tensors(module: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """The parameters then the persistent buffers that ``module`` holds itself.

    Args:
        module: Any module; its children are not looked at.

    Yields:
        ``(local_name, tensor)`` in registration order.
    """
    yield from module.named_parameters(recurse=False)
    # Non-persistent buffers (e.g. rotary tables) are not in the state dict, so no key maps them.
    transient: set[str] = getattr(module, "_non_persistent_buffers_set", set())
    for name, buffer in module.named_buffers(recurse=False):
        if name not in transient:
            yield name, buffer


def _describe(name: str, module: nn.Module) -> TracedModule:
    """Snapshot one module's tensors (names and shapes only)."""
    tensors = tuple(TracedTensor(local, tuple(tensor.shape)) for local, tensor in held_tensors(module))
    return TracedModule(name, type(module).__name__, tensors)


def _holders(model: nn.Module) -> dict[nn.Module, str]:
    """Every module that holds tensors itself, with its name (the first one if shared)."""
    return {
        module: name for name, module in model.named_modules() if next(held_tensors(module), None) is not None
    }


def trace(model: nn.Module, run: Callable[[nn.Module], object]) -> Trace:
    """Run ``model`` once and record its tensor-holding modules in first-call order.

    Forward pre-hooks go on every module that directly holds a parameter or persistent buffer;
    ``run(model)`` is called under ``torch.no_grad()``; the hooks are removed afterwards, also
    when ``run`` raises. A module called several times (shared blocks, tied layers) is recorded
    at its first call only. Modules whose ``forward`` is called directly (``m.forward(x)``)
    bypass hooks and show up in ``not_run``.

    Args:
        model: The model, on any device; ``meta`` needs no memory for weights.
        run: Calls the model on example inputs (on the model's device); its result is ignored.

    Returns:
        The trace.

    Example:
        >>> model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)).to("meta")
        >>> [m.name for m in trace(model, lambda m: m(torch.zeros(1, 2, device="meta"))).modules]
        ['0', '2']
    """
    holders = _holders(model)
    called: list[nn.Module] = []
    seen: set[nn.Module] = set()

    def record(module: nn.Module, _args: object) -> None:
        if module not in seen:
            seen.add(module)
            called.append(module)

    handles = [module.register_forward_pre_hook(record) for module in holders]
    try:
        with torch.no_grad():
            run(model)
    finally:
        for handle in handles:
            handle.remove()
    # Shapes are read after the run so that lazy modules (LazyLinear) report materialised shapes.
    modules = tuple(_describe(holders[module], module) for module in called)
    not_run = tuple(_describe(name, module) for module, name in holders.items() if module not in seen)
    return Trace(modules, not_run)


def state_shapes(model: nn.Module) -> dict[str, Shape]:
    """Every state-dict key of ``model`` with its shape (works on ``meta``).

    Unlike a trace this includes tensors of modules that never run and aliases that a state dict
    lists twice, which is what coverage must see.
    """
    return {key: tuple(tensor.shape) for key, tensor in model.state_dict().items()}

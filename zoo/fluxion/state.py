"""Saving and loading weights with stable keys, whether or not adapters are injected.

Injecting an adapter renames the keys of a model's `state_dict` (the target now sits inside the
adapter). The functions here name every tensor of the base model as if no adapter were injected, and
every adapter tensor after the base layer it wraps, so base checkpoints and adapter checkpoints stay
interchangeable between an adapted and a plain model.

- base key: the key the tensor has in the model with every adapter ejected (`Chain_1.Linear.weight`).
- adapter key: `<base path of the wrapped layer>@<depth>.<key inside the adapter>`, depth 0 being the
  adapter closest to the base layer (`Chain_1.Linear@0.LinearLora.Linear_1.weight`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import cast

import torch
from torch import nn

from zoo.fluxion.adapters.adapter import Adapter
from zoo.fluxion.chain import Chain, child_names


def _unwrap(module: nn.Module) -> nn.Module:
    while isinstance(module, Adapter):
        module = cast(Adapter[nn.Module], module).target
    return module


def _named_modules(root: nn.Module, remove_duplicate: bool = True) -> Iterator[tuple[str, nn.Module]]:
    # torch does not annotate what `named_modules` yields
    return root.named_modules(remove_duplicate=remove_duplicate)  # pyright: ignore[reportUnknownVariableType]


def _live_name_path(root: nn.Module, module: nn.Module) -> str:
    """Dotted live path from `root` to one of its descendants."""
    for name, descendant in _named_modules(root, remove_duplicate=False):
        if descendant is module:
            return name
    raise ValueError(f"{type(module).__name__} is not inside {type(root).__name__}")


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix and name else prefix or name


def _walk_keys(module: nn.Module, live: str, base: str) -> Iterator[tuple[str, str]]:
    """(live key, base key) for every tensor of the base model below `module`."""
    if not isinstance(module, Chain):
        for key in module.state_dict():
            yield _join(live, key), _join(base, key)
        return
    # torch has no public way to tell a persistent buffer (in state_dict) from a non-persistent one
    transient: set[str] = module._non_persistent_buffers_set  # pyright: ignore[reportPrivateUsage]
    own = [name for name, _ in module.named_parameters(recurse=False)] + [
        name for name, _ in module.named_buffers(recurse=False) if name not in transient
    ]
    for key in own:  # a chain's own tensors, rare but possible
        yield _join(live, key), _join(base, key)
    children = list(module.named_children())
    base_names = child_names([_unwrap(child) for _, child in children])
    for (live_name, child), base_name in zip(children, base_names, strict=True):
        live_path, base_path = _join(live, live_name), _join(base, base_name)
        inner = _unwrap(child)
        if inner is not child:
            live_path = _join(live_path, _live_name_path(child, inner))
        yield from _walk_keys(inner, live_path, base_path)


def base_key_map(model: nn.Module) -> dict[str, str]:
    """Live `state_dict` key → base key, for every tensor of the base model."""
    return dict(_walk_keys(model, "", ""))


def base_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The base model's weights, keyed as if no adapter were injected."""
    live = model.state_dict()
    return {base: live[live_key] for live_key, base in base_key_map(model).items()}


def load_base_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], strict: bool = True) -> None:
    """Load base weights (as `base_state_dict` names them) into a model with or without adapters."""
    by_base = {base: live for live, base in base_key_map(model).items()}
    missing = sorted(set(by_base) - set(state))
    unexpected = sorted(set(state) - set(by_base))
    if strict and (missing or unexpected):
        raise KeyError(
            f"base weights do not match the model: missing {missing[:10]}, unexpected {unexpected[:10]}"
        )
    live_state = {by_base[key]: tensor for key, tensor in state.items() if key in by_base}
    model.load_state_dict(live_state, strict=False)


def _adapters(model: nn.Module) -> Iterator[tuple[str, Adapter[nn.Module]]]:
    """(live path, adapter) for every injected adapter."""
    for name, module in _named_modules(model):
        if isinstance(module, Adapter):
            yield name, cast(Adapter[nn.Module], module)


def adapter_key_map(model: nn.Module) -> dict[str, str]:
    """Live `state_dict` key → adapter key, for every tensor that belongs to an adapter."""
    base_of_live = base_key_map(model)
    mapping: dict[str, str] = {}
    for live_path, adapter in _adapters(model):
        target_path = _live_name_path(cast(Chain, adapter), adapter.target)
        base_layer, depth = _base_layer_path(adapter, live_path, base_of_live)
        for key in cast(Chain, adapter).state_dict():
            if key == target_path or key.startswith(target_path + "."):
                continue
            mapping[_join(live_path, key)] = f"{base_layer}@{depth}.{key}"
    return mapping


def _base_layer_path(
    adapter: Adapter[nn.Module], live_path: str, base_of_live: Mapping[str, str]
) -> tuple[str, int]:
    depth, inner = 0, adapter.target
    while isinstance(inner, Adapter):
        depth, inner = depth + 1, cast(Adapter[nn.Module], inner).target
    inner_path = _join(live_path, _live_name_path(cast(Chain, adapter), inner))
    for live_key, base_key in base_of_live.items():
        if live_key.startswith(inner_path + "."):
            suffix = live_key[len(inner_path) + 1 :]
            return base_key[: -len(suffix) - 1], depth
    raise ValueError(f"adapter at {live_path!r} wraps a layer without weights")


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The weights of every injected adapter, keyed by the base layer each wraps."""
    live = model.state_dict()
    return {key: live[live_key] for live_key, key in adapter_key_map(model).items()}


def load_adapter_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Load adapter weights into a model with the same adapters injected; every key must match."""
    by_key = {key: live for live, key in adapter_key_map(model).items()}
    missing, unexpected = sorted(set(by_key) - set(state)), sorted(set(state) - set(by_key))
    if missing or unexpected:
        raise KeyError(f"adapter weights do not match: missing {missing[:10]}, unexpected {unexpected[:10]}")
    model.load_state_dict({by_key[key]: tensor for key, tensor in state.items()}, strict=False)


__all__ = [
    "adapter_key_map",
    "adapter_state_dict",
    "base_key_map",
    "base_state_dict",
    "load_adapter_state_dict",
    "load_base_state_dict",
]

"""Putting a LoRA's updates into a chain model: every layer found and checked before anything changes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

import zoo.fluxion as fl
from zoo.errors import ConfigError, CoverageError, few
from zoo.lora.build import build_delta, update_problem
from zoo.lora.manage import lora_names
from zoo.lora.weights import check_finite, split_lora_weights


@dataclass(frozen=True)
class _Site:
    """A base layer, as it sits now: the layer itself and the chain holding it."""

    path: str
    layer: nn.Module
    holder: fl.Chain


def _sites(model: fl.Chain, paths: Sequence[str]) -> tuple[dict[str, _Site], list[str]]:
    """Layers by their base path (the path with every adapter ejected), and the paths not found."""
    live_of_base = {base: live for live, base in fl.base_key_map(model).items()}
    sites: dict[str, _Site] = {}
    missing: list[str] = []
    for path in paths:
        live = live_of_base.get(f"{path}.weight")
        if live is None:
            missing.append(path)
            continue
        live_path = live.removesuffix(".weight")
        holder_path = live_path.rpartition(".")[0]
        holder = model.get_submodule(holder_path) if holder_path else model
        assert isinstance(holder, fl.Chain)
        sites[path] = _Site(path, model.get_submodule(live_path), holder)
    return sites, missing


def _place(site: _Site, delta: fl.LayerDelta) -> fl.LoraAdapter:
    holder = site.holder
    if isinstance(holder, fl.LoraAdapter) and holder.target is site.layer:
        holder.add_lora(delta)
        return holder
    assert isinstance(site.layer, fl.WeightedModule)
    return fl.LoraAdapter(site.layer, delta).inject(holder)


def inject_lora(
    model: fl.Chain, name: str, weights: Mapping[str, torch.Tensor], scale: float = 1.0
) -> list[fl.LoraAdapter]:
    """Add the LoRA `name` to every layer `weights` names; all of them, or (on any error) none.

    Args:
        model: The chain model (adapters already in it are fine: updates on one layer share its adapter).
        name: Names this LoRA for `set_lora_scale`, `remove_lora` and `fuse_loras`; unique per model.
        weights: `<layer path>.<role>` tensors in zoo's format (`zoo.lora.kinds`), alpha folded in.
        scale: Multiplier of the update, changeable later.

    Returns:
        The adapters holding the new updates, one per layer.

    Raises:
        FormatError: A key is not a LoRA key, or a layer's set of tensors is incomplete or mixed.
        CoverageError: Some layers are not in the model, or their updates do not fit them.
        TensorValueError: A tensor holds NaN or Inf.
        ConfigError: The model already has a LoRA called `name`.
    """
    if name in lora_names(model):
        raise ConfigError(
            f"the model already has a LoRA named {name!r}", hint="remove it or pick another name"
        )
    updates = split_lora_weights(weights)
    check_finite(updates)
    sites, missing = _sites(model, list(updates))
    problems = [f"{path}: no such layer with weights in {type(model).__name__}" for path in missing]
    problems += [
        p
        for path, site in sites.items()
        if (p := update_problem(path, site.layer, updates[path])) is not None
    ]
    if problems:
        raise CoverageError(
            f"LoRA {name!r} does not fit the model: {len(problems)} problem(s): {few(problems, 8, '; ')}"
        )
    deltas = {path: build_delta(name, site.layer, updates[path], scale) for path, site in sites.items()}
    return [_place(sites[path], delta) for path, delta in deltas.items()]


__all__ = ["inject_lora"]

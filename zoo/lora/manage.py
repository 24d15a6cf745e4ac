"""LoRAs in a model at run time: names, scales, removing, ejecting, and fusing into the weights."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

import zoo.fluxion as fl
from zoo.errors import ConfigError, few


def lora_adapters(model: fl.Chain) -> Iterator[fl.LoraAdapter]:
    """Every `LoraAdapter` in the model."""
    for adapter, _parent in model.walk(fl.LoraAdapter):
        assert isinstance(adapter, fl.LoraAdapter)
        yield adapter


def _loras(model: fl.Chain, name: str) -> list[fl.LayerDelta]:
    found = [adapter.loras[name] for adapter in lora_adapters(model) if name in adapter.loras]
    if not found:
        raise ConfigError(f"no LoRA named {name!r} in the model (have: {lora_names(model) or 'none'})")
    return found


def lora_names(model: fl.Chain) -> list[str]:
    """Names of the LoRAs in the model, in the order they first appear."""
    names: dict[str, None] = {}
    for adapter in lora_adapters(model):
        names.update(dict.fromkeys(adapter.lora_names))
    return list(names)


def lora_scales(model: fl.Chain) -> dict[str, float]:
    """Each LoRA's scale (the one of its first layer: `set_lora_scale` keeps them equal)."""
    return {name: _loras(model, name)[0].scale for name in lora_names(model)}


def set_lora_scale(model: fl.Chain, name: str, scale: float) -> None:
    """Set the scale of every layer of the LoRA `name`."""
    for lora in _loras(model, name):
        lora.scale = scale


def remove_lora(model: fl.Chain, name: str) -> None:
    """Take the LoRA `name` out; adapters left without LoRAs are ejected."""
    _loras(model, name)  # raises when absent, before anything changes
    for adapter in list(lora_adapters(model)):
        if name in adapter.loras:
            adapter.remove_lora(name)
            if not adapter.loras:
                adapter.eject()


def eject_loras(model: fl.Chain) -> None:
    """Take every LoRA out: the model is the base model again, bit for bit."""
    for adapter in list(lora_adapters(model)):
        adapter.eject()


# -- fusing -------------------------------------------------------------------------------------------


@dataclass
class FusedLoras:
    """LoRAs added into their layers' tensors by `fuse_loras`; `unfuse()` puts the originals back.

    Attributes:
        names: The LoRAs fused.
        originals: Each changed layer with its weight and bias (None when the bias was not changed) as
            they were.
    """

    names: list[str]
    originals: list[tuple[fl.WeightedModule, torch.Tensor, torch.Tensor | None]]

    def unfuse(self) -> None:
        """Restore the tensors as they were before fusing, bit for bit (the LoRAs stay gone)."""
        with torch.no_grad():
            for layer, weight, bias in self.originals:
                layer.weight.copy_(weight)
                if bias is not None:
                    _bias(layer).copy_(bias)
        self.originals = []


def fuse_loras(
    model: fl.Chain, names: Sequence[str] | None = None, keep_originals: bool = True
) -> FusedLoras:
    """Add LoRAs (all, or those named) into the tensors of their layers, then take them out.

    The model then runs at the speed of the base model. With `keep_originals`, the tensors as they were
    are kept (one copy of each changed layer's) so `unfuse()` can restore them exactly. Every change is
    computed from the layer as it is before fusing, as at run time; a DoRA left unfused on a layer that
    changes would renormalise against the new weight, so that is refused, before anything changes.
    """
    chosen = list(names) if names is not None else lora_names(model)
    for name in chosen:
        _loras(model, name)
    plan = [
        (adapter, [adapter.loras[n] for n in chosen if n in adapter.loras])
        for adapter in lora_adapters(model)
    ]
    plan = [(adapter, here) for adapter, here in plan if here]
    _check_fusable(plan)
    fused = FusedLoras(chosen, [])
    for adapter, here in plan:
        _fuse_into(adapter, here, fused if keep_originals else None)
    return fused


def _check_fusable(plan: list[tuple[fl.LoraAdapter, list[fl.LayerDelta]]]) -> None:
    problems: list[str] = []
    for adapter, here in plan:
        left = [lora for lora in adapter.loras.values() if lora not in here]
        if any(isinstance(lora, fl.Dora) for lora in left):
            problems.append(f"{_where(adapter)}: DoRA {[lora.name for lora in left]} would stay unfused")
        if _bias_of(adapter.target) is None and any(lora.delta_bias() is not None for lora in here):
            problems.append(f"{_where(adapter)}: a bias change for a layer without a bias")
    if problems:
        raise ConfigError(
            f"cannot fuse: {few(problems, 4, '; ')}", hint="fuse every LoRA on such layers together, or none"
        )


def _fuse_into(adapter: fl.LoraAdapter, loras: list[fl.LayerDelta], record: FusedLoras | None) -> None:
    target = adapter.target
    weight, bias = target.weight, _bias_of(target)
    exact = torch.promote_types(weight.dtype, torch.float32)  # add in float32 at least, then round once
    delta = sum((lora.delta_weight().to(exact) for lora in loras), torch.zeros_like(weight, dtype=exact))
    bias_deltas = [change.to(exact) for lora in loras if (change := lora.delta_bias()) is not None]
    if record is not None:
        kept_bias = bias.detach().clone() if bias is not None and bias_deltas else None
        record.originals.append((target, weight.detach().clone(), kept_bias))
    with torch.no_grad():
        weight.copy_((weight.to(exact) + delta.reshape(weight.shape)).to(weight.dtype))
        if bias is not None and bias_deltas:
            bias.copy_((bias.to(exact) + sum(bias_deltas)).to(bias.dtype))
    for lora in loras:
        adapter.remove_lora(lora.name)
    if not adapter.loras:
        adapter.eject()


def _bias_of(layer: fl.WeightedModule) -> torch.Tensor | None:
    bias = getattr(layer, "bias", None)
    return bias if isinstance(bias, torch.Tensor) else None


def _bias(layer: fl.WeightedModule) -> torch.Tensor:
    bias = _bias_of(layer)
    assert bias is not None
    return bias


def _where(adapter: fl.LoraAdapter) -> str:
    return adapter.get_path() or type(adapter.target).__name__


__all__ = [
    "FusedLoras",
    "eject_loras",
    "fuse_loras",
    "lora_adapters",
    "lora_names",
    "lora_scales",
    "remove_lora",
    "set_lora_scale",
]

"""LoRAs at run time: put low-rank updates into a chain model, rescale, remove, fuse.

Weights come as plain tensors keyed by the chain path of the layer they change, with alpha already
folded into `up` (the format `zoo convert lora` writes, one component at a time):

    <layer path>.lora_down.weight   (rank, in) or (rank, in, kh, kw)
    <layer path>.lora_up.weight     (out, rank) or (out, rank, 1, 1)

Each changed layer gets an `fl.LoraAdapter` holding one `fl.Lora` per named LoRA, so several LoRAs
stack on one model and each keeps its own scale. Nothing here edits a base weight except `fuse_loras`,
which keeps the originals so `unfuse()` restores them bit for bit. Every function checks everything
before it changes anything: on an error the model is as it was.

Example:
    >>> import torch, zoo.fluxion as fl
    >>> model = fl.Chain(fl.Linear(8, 4))
    >>> weights = {"Linear.lora_down.weight": torch.randn(2, 8), "Linear.lora_up.weight": torch.randn(4, 2)}
    >>> _ = inject_lora(model, "style", weights, scale=0.5)
    >>> lora_names(model)
    ['style']
    >>> eject_loras(model)
    >>> lora_names(model)
    []
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

import zoo.fluxion as fl
from zoo.errors import ConfigError, CoverageError, FormatError, TensorValueError, few

DOWN_SUFFIX = ".lora_down.weight"
UP_SUFFIX = ".lora_up.weight"


@dataclass(frozen=True)
class LoraLayerWeights:
    """One layer's update: `up @ down` (alpha folded in), before the run-time scale."""

    path: str
    down: torch.Tensor
    up: torch.Tensor

    @property
    def rank(self) -> int:
        return self.down.shape[0]


def split_lora_weights(weights: Mapping[str, torch.Tensor]) -> dict[str, LoraLayerWeights]:
    """Pair `<path>.lora_down.weight` with `<path>.lora_up.weight`; any other key is an error."""
    stray = sorted(key for key in weights if not key.endswith((DOWN_SUFFIX, UP_SUFFIX)))
    if stray:
        raise FormatError(
            f"{len(stray)} key(s) are not `<layer path>{DOWN_SUFFIX}` / `{UP_SUFFIX}`: {few(stray, 8, '; ')}",
            tensor=stray[0],
        )
    paths = {key.removesuffix(DOWN_SUFFIX).removesuffix(UP_SUFFIX) for key in weights}
    unpaired = sorted(p for p in paths if p + DOWN_SUFFIX not in weights or p + UP_SUFFIX not in weights)
    if unpaired:
        raise FormatError(f"{len(unpaired)} layer(s) lack their down or up half: {few(unpaired, 8, '; ')}")
    return {
        path: LoraLayerWeights(path, weights[path + DOWN_SUFFIX], weights[path + UP_SUFFIX])
        for path in sorted(paths)
    }


# -- finding layers while adapters are in -----------------------------------------------------------


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


# -- checks -------------------------------------------------------------------------------------------


def _expected_shapes(layer: nn.Module, rank: int) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    if isinstance(layer, fl.Linear):
        return (rank, layer.in_features), (layer.out_features, rank)
    if isinstance(layer, fl.Conv2d) and _plain_conv(layer):
        return (rank, layer.in_channels, *layer.kernel_size), (layer.out_channels, rank, 1, 1)
    return None


def _plain_conv(layer: fl.Conv2d) -> bool:
    """A convolution a Conv2dLora reproduces: no groups, no dilation, zero padding."""
    return layer.groups == 1 and layer.dilation == (1, 1) and layer.padding_mode == "zeros"


def _problem(site: _Site, weights: LoraLayerWeights) -> str | None:
    """What prevents `weights` from going on this layer, or None."""
    if weights.down.shape[0] != weights.up.shape[1]:
        return f"{site.path}: down has rank {weights.down.shape[0]}, up has rank {weights.up.shape[1]}"
    expected = _expected_shapes(site.layer, weights.rank)
    if expected is None:
        return f"{site.path}: a {type(site.layer).__name__} cannot take a LoRA (only Linear and plain Conv2d)"
    if (tuple(weights.down.shape), tuple(weights.up.shape)) != expected:
        got = f"down {tuple(weights.down.shape)}, up {tuple(weights.up.shape)}"
        return f"{site.path}: {got} do not fit the layer (expected down {expected[0]}, up {expected[1]})"
    return None


def _check_finite(layers: Mapping[str, LoraLayerWeights]) -> None:
    for path, weights in layers.items():
        for suffix, tensor in ((DOWN_SUFFIX, weights.down), (UP_SUFFIX, weights.up)):
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                raise TensorValueError("LoRA weights hold NaN or Inf", tensor=path + suffix)


# -- building and placing -----------------------------------------------------------------------------


def _build_lora(name: str, layer: nn.Module, weights: LoraLayerWeights, scale: float) -> fl.Lora:
    if isinstance(layer, fl.Linear):
        lora: fl.Lora = fl.LinearLora.for_target(name, layer, weights.rank, scale)
    else:
        assert isinstance(layer, fl.Conv2d)
        lora = fl.Conv2dLora.for_target(name, layer, weights.rank, scale)
    with torch.no_grad():
        lora.down.weight.copy_(weights.down)
        lora.up.weight.copy_(weights.up)
    return lora


def _place(site: _Site, lora: fl.Lora) -> fl.LoraAdapter:
    holder = site.holder
    if isinstance(holder, fl.LoraAdapter) and holder.target is site.layer:
        holder.add_lora(lora)
        return holder
    assert isinstance(site.layer, fl.WeightedModule)
    return fl.LoraAdapter(site.layer, lora).inject(holder)


def inject_lora(
    model: fl.Chain, name: str, weights: Mapping[str, torch.Tensor], scale: float = 1.0
) -> list[fl.LoraAdapter]:
    """Add the LoRA `name` to every layer `weights` names; all of them, or (on any error) none.

    Args:
        model: The chain model (adapters already in it are fine: LoRAs on one layer share its adapter).
        name: Names this LoRA for `set_lora_scale`, `remove_lora` and `fuse_loras`; unique per model.
        weights: `<layer path>.lora_down.weight` / `.lora_up.weight` tensors, alpha folded in.
        scale: Multiplier of the update, changeable later.

    Returns:
        The adapters holding the new LoRAs, one per layer.

    Raises:
        FormatError: A key is not a LoRA key, or a pair is incomplete.
        CoverageError: Some layers are not in the model, or their weights do not fit them.
        TensorValueError: A tensor holds NaN or Inf.
        ConfigError: The model already has a LoRA called `name`.
    """
    if name in lora_names(model):
        raise ConfigError(
            f"the model already has a LoRA named {name!r}", hint="remove it or pick another name"
        )
    layers = split_lora_weights(weights)
    _check_finite(layers)
    sites, missing = _sites(model, list(layers))
    problems = [f"{path}: no such layer with weights in {type(model).__name__}" for path in missing]
    problems += [p for path, site in sites.items() if (p := _problem(site, layers[path])) is not None]
    if problems:
        raise CoverageError(
            f"LoRA {name!r} does not fit the model: {len(problems)} problem(s): {few(problems, 8, '; ')}"
        )
    loras = {path: _build_lora(name, site.layer, layers[path], scale) for path, site in sites.items()}
    return [_place(sites[path], lora) for path, lora in loras.items()]


# -- run time -----------------------------------------------------------------------------------------


def lora_adapters(model: fl.Chain) -> Iterator[fl.LoraAdapter]:
    """Every `LoraAdapter` in the model."""
    for adapter, _parent in model.walk(fl.LoraAdapter):
        assert isinstance(adapter, fl.LoraAdapter)
        yield adapter


def _loras(model: fl.Chain, name: str) -> list[fl.Lora]:
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


@dataclass
class FusedLoras:
    """LoRAs added into their layers' weights by `fuse_loras`; `unfuse()` puts the originals back."""

    names: list[str]
    originals: list[tuple[fl.WeightedModule, torch.Tensor]]

    def unfuse(self) -> None:
        """Restore the weights as they were before fusing, bit for bit (the LoRAs stay gone)."""
        with torch.no_grad():
            for layer, original in self.originals:
                layer.weight.copy_(original)
        self.originals = []


def fuse_loras(
    model: fl.Chain, names: Sequence[str] | None = None, keep_originals: bool = True
) -> FusedLoras:
    """Add LoRAs (all, or those named) into the weights of their layers, then take them out.

    The model then runs at the speed of the base model. With `keep_originals`, the weights as they were
    are kept (one copy of each changed layer) so `unfuse()` can restore them exactly.
    """
    chosen = list(names) if names is not None else lora_names(model)
    for name in chosen:
        _loras(model, name)
    fused = FusedLoras(chosen, [])
    for adapter in list(lora_adapters(model)):
        here = [adapter.loras[name] for name in chosen if name in adapter.loras]
        if here:
            _fuse_into(adapter, here, fused if keep_originals else None)
    return fused


def _fuse_into(adapter: fl.LoraAdapter, loras: list[fl.Lora], record: FusedLoras | None) -> None:
    target = adapter.target
    weight = target.weight
    exact = torch.promote_types(weight.dtype, torch.float32)  # add in float32 at least, then round once
    delta = sum((lora.delta_weight().to(exact) for lora in loras), torch.zeros_like(weight, dtype=exact))
    if record is not None:
        record.originals.append((target, weight.detach().clone()))
    with torch.no_grad():
        weight.copy_((weight.to(exact) + delta).to(weight.dtype))
    for lora in loras:
        adapter.remove_lora(lora.name)
    if not adapter.loras:
        adapter.eject()


__all__ = [
    "DOWN_SUFFIX",
    "UP_SUFFIX",
    "FusedLoras",
    "LoraLayerWeights",
    "eject_loras",
    "fuse_loras",
    "inject_lora",
    "lora_adapters",
    "lora_names",
    "lora_scales",
    "remove_lora",
    "set_lora_scale",
    "split_lora_weights",
]

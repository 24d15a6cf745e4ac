"""LoRAs at run time: put layer updates into a chain model, rescale, remove, fuse.

Weights come as plain tensors keyed by the chain path of the layer they change, in the format
`zoo convert lora` writes (one component at a time): `<layer path>.<role>`, alpha already folded in,
the role naming the kind of update (`zoo.lora.kinds`):

    <layer path>.lora_down.weight   (rank, in) or (rank, in, kh, kw)      LoRA / LoCon
    <layer path>.lora_up.weight     (out, rank) or (out, rank, 1, 1)
    <layer path>.lora_mid.weight    (rank, rank, kh, kw)                  Tucker LoCon (down 1×1 then)
    <layer path>.hada_w1_a ...      LoHa factors (+ hada_t1, hada_t2)
    <layer path>.lokr_w1 ...        LoKr factors (+ lokr_t2)
    <layer path>.diff, .diff_b      a whole weight and bias change
    <layer path>.w_norm, .b_norm    a normalisation layer's weight and bias change
    <layer path>.dora_scale / .lora_magnitude_vector   a DoRA magnitude (LyCORIS / peft rule)

Each changed layer gets an `fl.LoraAdapter` holding one update per named LoRA, so several LoRAs stack
on one model and each keeps its own scale. Nothing here edits a base weight except `fuse_loras`, which
keeps the originals so `unfuse()` restores them bit for bit. Every function checks everything before
it changes anything: on an error the model is as it was.

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

from zoo.lora.inject import inject_lora
from zoo.lora.manage import (
    FusedLoras,
    eject_loras,
    fuse_loras,
    lora_adapters,
    lora_names,
    lora_scales,
    remove_lora,
    set_lora_scale,
)
from zoo.lora.weights import DOWN_SUFFIX, UP_SUFFIX, LayerUpdate, split_lora_weights

__all__ = [
    "DOWN_SUFFIX",
    "UP_SUFFIX",
    "FusedLoras",
    "LayerUpdate",
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

"""Where each tensor name of a Control-LoRA file lands in our ControlNet.

The files name tensors like lllyasviel's ControlNets without their `control_model.` prefix
(`input_blocks.1.1.transformer_blocks.0.attn1.to_q`, `input_hint_block.0`, `zero_convs.3.0`). The map
is composed of two we already have: the original layout's names of a diffusers `ControlNetModel` (the
writer of synthetic original files, run on a header built on meta) and the traced key map from
diffusers' names to ours.
"""

from __future__ import annotations

import torch

from converters._convert.component import trace_conversion
from converters.controlnet import SDXL
from converters.controlnet.original import SUBFOLDER, controlnet_tensors
from converters.controlnet.upstream import diffusers_controlnet_config
from converters.declaration import upstream_model
from zoo.foundationals.controlnet import ControlNetConfig


def original_to_ours(config: ControlNetConfig) -> dict[str, str]:
    """Original tensor name (no prefix) -> our ControlNet's state-dict key, for `config`."""
    configs = {SUBFOLDER: diffusers_controlnet_config(config)}
    with torch.device("meta"):
        reference = upstream_model(SDXL, configs)
    header = {key: (tuple(tensor.shape), tensor.dtype) for key, tensor in reference.state_dict().items()}
    original_of = {
        tensor.inputs[0][1]: name for name, tensor in controlnet_tensors(SUBFOLDER, header).items()
    }
    keymap = trace_conversion(SDXL, configs).keymap
    ours: dict[str, str] = {}
    for target in keymap.target_keys():
        entry = keymap.entry(target)
        assert entry is not None and len(entry.sources) == 1, "a ControlNet's key map is one to one"
        ours[original_of[entry.sources[0]]] = target
    return ours


__all__ = ["original_to_ours"]

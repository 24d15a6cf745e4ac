"""A ControlNet's copied weights: which of its tensors copy a UNet's, and copying them.

A ControlNet starts as a copy of its UNet's timestep encoder, down path and middle block (diffusers'
`ControlNetModel.from_unet`); Control-LoRAs are stored as changes to that copy. Our ControlNet is built
from the UNet's own blocks, so the names match but for the down path's name and its input convolution,
which sits next to the condition encoder.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from zoo.foundationals.controlnet.controlnet import ControlNet

_DOWN = ("ConditionedDownBlocks.", "DownBlocks.")
_INPUT_CONV = ("DownBlocks.Chain_1.Sum.Conv2d.", "DownBlocks.Chain_1.Conv2d.")
_OWN = ("ConditionedDownBlocks.Chain_1.Sum.ConditionEncoder.", "ZeroConvolutions.")


def unet_key(controlnet_key: str) -> str | None:
    """The UNet state-dict key a ControlNet tensor copies; None for the ControlNet's own tensors."""
    if controlnet_key.startswith(_OWN):
        return None
    key = controlnet_key.replace(*_DOWN, 1) if controlnet_key.startswith(_DOWN[0]) else controlnet_key
    return key.replace(*_INPUT_CONV, 1) if key.startswith(_INPUT_CONV[0]) else key


def copy_unet_weights(controlnet: ControlNet, unet_state: Mapping[str, torch.Tensor]) -> list[str]:
    """Load the UNet's weights into the ControlNet's copy of it; returns the keys left to set.

    Raises:
        KeyError: The UNet lacks a tensor the ControlNet copies (another architecture).
        ValueError: A tensor has another shape.
    """
    state = controlnet.state_dict()
    own: list[str] = []
    with torch.no_grad():
        for key, tensor in state.items():
            source = unet_key(key)
            if source is None:
                own.append(key)
                continue
            if unet_state[source].shape != tensor.shape:
                raise ValueError(
                    f"{source}: shape {tuple(unet_state[source].shape)}, the ControlNet needs {tuple(tensor.shape)}"
                )
            tensor.copy_(unet_state[source])
    return own


__all__ = ["copy_unet_weights", "unet_key"]

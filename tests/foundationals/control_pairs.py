"""Tiny diffusers models and ours converted from their saved folders, for the control adapters' tests.

Each reference is built with diffusers' own class from the families' tiny configs, seeded, given random
weights everywhere (a fresh ControlNet's zero convolutions would make every residual zero, and a test
that cannot fail), saved with `save_pretrained` and converted with `zoo convert`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

import zoo
from converters._convert.by_name import convert
from converters.controlnet.upstream import tiny_controlnet_config
from converters.sd15.tiny import TINY as SD15_TINY
from converters.sdxl.tiny import TINY as SDXL_TINY

TINY_UNETS = {"sd15": SD15_TINY["unet"], "sdxl": SDXL_TINY["unet"]}
WEIGHT_STD = 0.1


@dataclass
class Pair:
    """A diffusers model and ours with the same weights."""

    reference: Any
    ours: Any


def randomize(model: nn.Module, seed: int) -> nn.Module:
    """Seeded normal weights for every parameter (biases and norms included)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * WEIGHT_STD)
    return model.eval()


def converted(model: Any, name: str, subfolder: str, root: Path) -> Any:
    """Save `model` as `root/<subfolder>`, convert it as `name`, load ours back."""
    model.save_pretrained(root / subfolder)
    run = convert(name, out=root / "out", source=str(root / subfolder))
    return zoo.load(str(run.results[0].folder))


def unet_pair(kind: str, root: Path, seed: int = 0) -> Pair:
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel

    torch.manual_seed(seed)
    reference = randomize(UNet2DConditionModel(**TINY_UNETS[kind]), seed)
    return Pair(reference, converted(reference, f"{kind}.unet", "unet", root / "unet-source"))


def controlnet_pair(kind: str, root: Path, seed: int) -> Pair:
    from diffusers.models.controlnets.controlnet import ControlNetModel

    torch.manual_seed(seed)
    reference = randomize(ControlNetModel(**tiny_controlnet_config(TINY_UNETS[kind])), seed)
    return Pair(reference, converted(reference, f"controlnet.{kind}", "controlnet", root / f"cn-{seed}"))


def relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    return ((ours - reference).abs().max() / reference.abs().max()).item()


__all__ = ["Pair", "controlnet_pair", "converted", "randomize", "relative_error", "unet_pair"]

"""Helpers for the LyCORIS / peft LoRA tests: networks made by the libraries themselves on the tiny
upstream models, given seeded random weights, saved by the library, and used as the reference.

LyCORIS keeps its settings in class attributes (`apply_preset`) and its presets in a module dict: both
are restored after each use, so no test sees another's preset. Its logger is quietened while it runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from lora_helpers import (  # pyright: ignore[reportMissingImports]
    TOLERANCE,
    TinyFamily,
    max_relative_error,
    same_bits,
    snapshot,
)
from torch import nn

PRESET_NAME = "zoo-test"


@contextmanager
def lycoris_preset(network_class: type, preset: dict[str, Any]) -> Iterator[str]:
    """Register `preset` for LyCORIS under PRESET_NAME; the class's settings and the presets come back after."""
    from lycoris.config import PRESET
    from lycoris.logging import logger

    saved = {name: getattr(network_class, name) for name in dir(network_class) if name.isupper()}
    level = logger.level
    PRESET[PRESET_NAME] = preset
    logger.setLevel(logging.ERROR)
    try:
        yield PRESET_NAME
    finally:
        PRESET.pop(PRESET_NAME, None)
        for name, value in saved.items():
            setattr(network_class, name, value)
        logger.setLevel(level)


def randomize(network: nn.Module, seed: int, std: float = 0.2) -> None:
    """Seeded random values for every update (LyCORIS initialises most of them so they change nothing).

    DoRA magnitudes stay near the layer's norms (times 1 ± 10 %); `full` updates, which hold the whole
    weight once applied, get noise added to it.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in sorted(network.named_parameters()):
            noise = torch.randn(parameter.shape, generator=generator).to(parameter)
            if name.endswith("dora_scale"):
                parameter.mul_(1 + 0.1 * noise)
            elif type(_owner(network, name)).__name__ == "FullModule":
                parameter.add_(0.05 * noise)
            else:
                parameter.copy_(std * noise)


def _owner(network: nn.Module, parameter_name: str) -> nn.Module:
    return network.get_submodule(parameter_name.rpartition(".")[0])


def kohya_network(
    family: TinyFamily, preset: dict[str, Any], seed: int, **settings: Any
) -> tuple[Any, Any, Any]:
    """A LyCORIS network for sd-scripts (`lora_unet_*`, `lora_te*_*`) on fresh upstream models, applied.

    Returns the network, the UNet and the text tower(s) (a ModuleDict), all in eval mode.
    """
    from lycoris.kohya import LycorisNetworkKohya, create_network

    unet, towers = family.upstream("unet"), family.upstream("text_encoder")
    text = [towers[name] for name in towers] if len(towers) > 1 else towers["text_encoder"]
    with lycoris_preset(LycorisNetworkKohya, preset) as name:
        network = create_network(
            1.0, settings.pop("dim", 4), settings.pop("alpha", 2), None, text, unet, preset=name, **settings
        )
        network.apply_to(text, unet, True, True)
    randomize(network, seed)
    return network.eval(), unet, towers


def lycoris_network(model: nn.Module, preset: dict[str, Any], seed: int, **settings: Any) -> Any:
    """LyCORIS' own network (`lycoris_*` names) on one upstream model, applied, random, in eval mode."""
    from lycoris import LycorisNetwork, create_lycoris

    with lycoris_preset(LycorisNetwork, preset) as name:
        network = create_lycoris(model, 1.0, preset=name, warn_on_unmatched=False, **settings)
        network.apply_to()
    randomize(network, seed)
    return network.eval()


def save_lycoris(network: Any, path: Path) -> Path:
    """LyCORIS' own saving (`save_weights`), in float32."""
    network.save_weights(str(path), torch.float32, None)
    return path


def check_parity(
    family: TinyFamily,
    component: str,
    path: Path,
    reference: nn.Module,
    rescale: Callable[[float], None],
    expected_format: str,
) -> dict[str, float]:
    """Ours with the file vs the reference at scales 1 and 0.5, injected and fused; unfuse and eject exact.

    `rescale(s)` sets the reference's scale (LyCORIS' multiplier, peft's scale).
    """
    from converters.lora import load_lora
    from zoo.lora import eject_loras, fuse_loras, lora_names

    ours = family.ours(component)
    before, plain = snapshot(ours), family.run(component, ours, upstream=False)
    errors: dict[str, float] = {}
    for scale in (1.0, 0.5):
        rescale(scale)
        expected = family.run(component, reference, upstream=True)
        if scale == 1:
            errors["lora_effect"] = max_relative_error(plain, expected)
        loaded = load_lora(ours, path, name="style", scale=scale)
        assert loaded.format == expected_format and loaded.layers > 0
        errors[f"scale_{scale}"] = max_relative_error(family.run(component, ours, False), expected)
        fused = fuse_loras(ours)
        assert lora_names(ours) == []
        errors[f"fused_{scale}"] = max_relative_error(family.run(component, ours, False), expected)
        fused.unfuse()
        assert same_bits(ours, before)
    rescale(1.0)
    load_lora(ours, path, name="style")
    eject_loras(ours)
    assert same_bits(ours, before) and lora_names(ours) == []
    print(f"{expected_format} {family.family}.{component}: {errors}")
    assert errors["lora_effect"] > 1e-3, "the LoRA must change the output for the test to mean anything"
    assert max(value for key, value in errors.items() if key != "lora_effect") <= TOLERANCE
    return errors

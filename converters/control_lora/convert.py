"""A Control-LoRA and its base UNet -> a ControlNet of ours: `OUT/<file stem>/` (`zoo.load`-able).

The ControlNet starts as a copy of the base UNet's encoder (as Stability's loaders build it); each
`<name>.up` / `<name>.down` pair of the file adds `up @ down` (no alpha, no rank scaling) to the copied
weight `<name>.weight`, and every other tensor (the condition encoder, the zero convolutions, norms,
biases...) replaces the copy's. The `lora_controlnet` key only marks the format. Everything is checked
before anything is written: an unknown name, a missing half, a shape the base cannot hold, a base
that is not SDXL's, each is one error naming the file and the tensor, with nothing written.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from converters._checkpoints import TensorPlan, open_checkpoint, write_safetensors
from converters._checkpoints.readers import CheckpointReader
from converters._convert.component import write_json_atomic
from converters._single_file.shapes import ShapeReader
from converters.control_lora.names import original_to_ours
from converters.controlnet.original import hint_channels
from zoo.configs import config_from_dict, config_to_dict, import_model_class, qualified_name
from zoo.errors import ConfigError, FormatError
from zoo.formats import COMPONENT_KEY, CONFIG_NAME, FORMAT_KEY, OUTPUT_FORMAT, WEIGHTS_NAME
from zoo.foundationals.controlnet import ControlNet, ControlNetConfig
from zoo.foundationals.controlnet.from_unet import copy_unet_weights
from zoo.foundationals.latent_diffusion.unet import UNet, UNetConfig
from zoo.loading import read_output_config

MARKER = "lora_controlnet"
UP, DOWN = ".up", ".down"
COMPONENT_PREFIX = "control_lora."
BASE_HINT = "Control-LoRAs are made for SDXL base 1.0: pass the folder `zoo convert sdxl` wrote for its UNet"


@dataclass(frozen=True)
class ControlLoraResult:
    """What one conversion wrote (or would write, on a dry run)."""

    name: str
    folder: Path
    tensors: int
    low_rank: int
    replaced: int
    params: int
    sha256: str | None
    dry_run: bool

    def to_dict(self) -> dict[str, Any]:
        return {key: str(value) if isinstance(value, Path) else value for key, value in self.__dict__.items()}


def read_base(base: Path) -> tuple[UNetConfig, dict[str, torch.Tensor]]:
    """The base UNet's config and weights from a `zoo convert` output folder; SDXL's only."""
    data = read_output_config(base)
    if import_model_class(data["model_class"]) is not UNet:
        raise ConfigError(
            f"the base is a {data['model_class'].rsplit('.', 1)[-1]}, not a UNet", file=base, hint=BASE_HINT
        )
    config = config_from_dict(UNetConfig, data["config"])
    if config.addition_embed_type != "text_time":
        raise ConfigError(
            "the base is an SD 1.x UNet (no added text/time conditioning)", file=base, hint=BASE_HINT
        )
    return config, load_file(base / WEIGHTS_NAME)


def _config(shapes: Mapping[str, tuple[int, ...]], unet: UNetConfig, file: Path) -> ControlNetConfig:
    if MARKER not in shapes:
        raise FormatError(
            f"not a Control-LoRA (no {MARKER!r} key)",
            file=file,
            hint="a ControlNet converts with zoo convert controlnet",
        )
    channels, steps = hint_channels(ShapeReader(shapes, "", "Control-LoRA"))
    return ControlNetConfig(unet=unet, conditioning_channels=channels, embedding_channels=tuple(steps))


def _merged(
    reader: CheckpointReader, controlnet: ControlNet, base: Mapping[str, torch.Tensor], file: Path
) -> tuple[int, int]:
    """Put the file into the ControlNet copied from the base; (low-rank pairs, replaced tensors)."""
    names = original_to_ours(controlnet.config)
    state = controlnet.state_dict()
    own = set(copy_unet_weights(controlnet, base))
    keys = [key for key in reader.keys() if key != MARKER]
    pairs = sorted({key.removesuffix(UP).removesuffix(DOWN) for key in keys if key.endswith((UP, DOWN))})
    full = sorted(key for key in keys if not key.endswith((UP, DOWN)))
    for module in pairs:
        target = _target(names, module + ".weight", file, module + UP)
        delta = _delta(reader, module, file)
        if delta.numel() != state[target].numel():
            raise _mismatch(file, module + UP, tuple(delta.shape), tuple(state[target].shape))
        with torch.no_grad():
            state[target].add_(delta.reshape(state[target].shape).to(state[target].dtype))
    for key in full:
        target = _target(names, key, file, key)
        tensor = reader.get(key)
        if tensor.shape != state[target].shape:
            raise _mismatch(file, key, tuple(tensor.shape), tuple(state[target].shape))
        with torch.no_grad():
            state[target].copy_(tensor)
        own.discard(target)
    if own:
        raise FormatError(
            f"{len(own)} ControlNet tensor(s) the base cannot give are missing, e.g. {sorted(own)[0]}",
            file=file,
        )
    return len(pairs), len(full)


def _target(names: Mapping[str, str], original: str, file: Path, key: str) -> str:
    if original not in names:
        raise FormatError("a tensor no ControlNet of this base has", file=file, tensor=key, hint=BASE_HINT)
    return names[original]


def _delta(reader: CheckpointReader, module: str, file: Path) -> torch.Tensor:
    for half in (UP, DOWN):
        if module + half not in reader.keys():
            raise FormatError(f"the low-rank pair lacks its {half[1:]} half", file=file, tensor=module + half)
    up, down = reader.get(module + UP).float(), reader.get(module + DOWN).float()
    if up.shape[1] != down.shape[0]:
        raise FormatError(
            f"up {tuple(up.shape)} and down {tuple(down.shape)} have different ranks",
            file=file,
            tensor=module + UP,
        )
    return up.flatten(1) @ down.flatten(1)


def _mismatch(file: Path, key: str, shape: tuple[int, ...], expected: tuple[int, ...]) -> ConfigError:
    return ConfigError(
        f"shape {shape} does not fit the base's {expected}: the base does not match",
        file=file,
        tensor=key,
        hint=BASE_HINT,
    )


def convert_control_lora(file: Path, base: Path, out: Path, dry_run: bool = False) -> ControlLoraResult:
    """Merge FILE into a copy of BASE's UNet encoder and write our ControlNet to `out/<file stem>/`."""
    unet_config, base_weights = read_base(base)
    with open_checkpoint(file) as reader:
        config = _config({key: reader.shape(key) for key in reader.keys()}, unet_config, file)
        controlnet = ControlNet(config, dtype=next(iter(base_weights.values())).dtype)
        low_rank, replaced = _merged(reader, controlnet, base_weights, file)
    name = COMPONENT_PREFIX + file.name.split(".")[0]
    folder = out / file.name.split(".")[0]
    state = controlnet.state_dict()
    sha256 = None if dry_run else _write(folder, name, controlnet, state)
    params = sum(tensor.numel() for tensor in state.values())
    return ControlLoraResult(name, folder, len(state), low_rank, replaced, params, sha256, dry_run)


def _write(folder: Path, name: str, controlnet: ControlNet, state: Mapping[str, torch.Tensor]) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    plans = [TensorPlan(key, tuple(t.shape), t.dtype, _getter(t)) for key, t in state.items()]
    summary = write_safetensors(
        folder / WEIGHTS_NAME, plans, {COMPONENT_KEY: name, FORMAT_KEY: str(OUTPUT_FORMAT)}
    )
    config = controlnet.config
    write_json_atomic(
        folder / CONFIG_NAME,
        {
            "zoo_format": OUTPUT_FORMAT,
            "component": name,
            "model_class": qualified_name(ControlNet),
            "config_class": qualified_name(type(config)),
            "config": config_to_dict(config),
            "dtype": str(next(iter(state.values())).dtype).removeprefix("torch."),
        },
    )
    return summary.sha256


def _getter(tensor: torch.Tensor) -> Callable[[], torch.Tensor]:
    return lambda: tensor.detach().contiguous()


__all__ = ["ControlLoraResult", "convert_control_lora", "read_base"]

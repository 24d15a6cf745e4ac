"""The base a LoRA goes on, and where each upstream module sits in our chain models.

A base is a family's models that LoRAs change (the conversions holding its `lora_parts`) with their
upstream configs, taken from the family's full-size configs (the family's name), a converted output
folder (our configs, turned back into upstream ones by `Conversion.upstream_configs_of`), a diffusers
pipeline folder, or a chain model in memory. Where each upstream module sits in our
chain comes from the declared conversion's traced key map (built on meta, cached per config digest):
`down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q` -> `DownBlocks.Chain_5...Distribute.Linear_1`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from converters import registry
from converters._convert.component import trace_conversion
from converters._convert.sources import FolderSource, read_config, resolve_source
from converters._tracing.keymap import Identity, Reshape
from converters.declaration import Conversion, upstream_model, upstream_prefix
from converters.family import Family
from zoo import fluxion as fl
from zoo.configs import config_digest, config_from_dict, import_model_class
from zoo.errors import ConfigError
from zoo.formats import CONFIG_NAME
from zoo.loading import read_output_config
from zoo.lora.build import layer_op


@dataclass(frozen=True)
class Placement:
    """Where one upstream module sits in our chain model.

    Attributes:
        component: Our component (`unet`, `text_encoder`): the key prefix in our LoRA files.
        path: The chain path of the layer.
        op: The layer's operation and shapes (Linear, Conv2d, LayerNorm, GroupNorm).
    """

    component: str
    path: str
    op: fl.LayerOp

    @property
    def weight_shape(self) -> tuple[int, ...]:
        return self.op.weight_shape


@dataclass(frozen=True)
class PlacementIndex:
    """Upstream module names (as the conversion's upstream state dict has them) -> placement or why not."""

    placements: Mapping[str, Placement]
    refused: Mapping[str, str]
    config_sha256: str
    keymap_sha256: str


@dataclass(frozen=True)
class BaseModel:
    """One of our models a LoRA can change, with the upstream configs it corresponds to."""

    conversion: Conversion
    upstream_configs: Mapping[str, Mapping[str, Any]]

    @property
    def component(self) -> str:
        return self.conversion.component

    @property
    def lora_components(self) -> tuple[str, ...]:
        """The parts LoRA files name (the upstream subfolders), of this model."""
        lora_parts = registry.family_of(self.conversion).lora_parts
        return tuple(part.subfolder for part in self.conversion.parts if part.subfolder in lora_parts)

    def prefix(self, lora_component: str) -> str:
        part = next(part for part in self.conversion.parts if part.subfolder == lora_component)
        return upstream_prefix(self.conversion, part)

    def index(self) -> PlacementIndex:
        """Where each upstream module sits in our model (traced on meta once per config)."""
        return _index(self.conversion.name, self._canonical_configs())

    def upstream_modules(self) -> frozenset[str]:
        """Names of the upstream model's modules (built on meta, no trace: cheap)."""
        return _upstream_modules(self.conversion.name, self._canonical_configs())

    def flat_names(self, lora_component: str) -> Mapping[str, str]:
        """A LoRA component's module names with `_` for `.` (as kohya and LyCORIS write them) -> names.

        Names that two modules would share are left out (none do in the models LoRAs fit).
        """
        return _flat_names(self.upstream_modules(), self.prefix(lora_component))

    def _canonical_configs(self) -> str:
        return json.dumps(self.upstream_configs, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class LoraBase:
    """A family's models that LoRAs change, and where they came from (for messages and metadata)."""

    family: str
    models: tuple[BaseModel, ...]
    description: str

    def model_for(self, lora_component: str) -> BaseModel | None:
        return next((m for m in self.models if lora_component in m.lora_components), None)

    @property
    def lora_components(self) -> tuple[str, ...]:
        return tuple(c for model in self.models for c in model.lora_components)

    @property
    def layers_per_block(self) -> int | None:
        unet = self.model_for("unet")
        return None if unet is None else int(unet.upstream_configs["unet"].get("layers_per_block", 2))


# -- placements ---------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def _index(name: str, configs_json: str) -> PlacementIndex:
    """Trace the conversion on meta and keep where every upstream Linear/Conv2d weight lands (cached)."""
    conversion = registry.resolve(name)[0]
    traced = trace_conversion(conversion, json.loads(configs_json))
    with torch.device("meta"):
        model = conversion.build_target(traced.config)
    placements: dict[str, Placement] = {}
    refused: dict[str, str] = {}
    for entry in traced.keymap.entries:
        for source in entry.sources:
            if source.endswith(".weight"):
                module = source.removesuffix(".weight")
                found = _placement(conversion.component, model, entry.targets, entry.transform)
                if isinstance(found, Placement):
                    placements[module] = found
                else:
                    refused[module] = found
    return PlacementIndex(placements, refused, config_digest(traced.config), traced.keymap.digest())


@functools.lru_cache(maxsize=32)
def _upstream_modules(name: str, configs_json: str) -> frozenset[str]:
    conversion = registry.resolve(name)[0]
    with torch.device("meta"):
        model = upstream_model(conversion, json.loads(configs_json))
    return frozenset(name for name, _module in model.named_modules() if name)


@functools.lru_cache(maxsize=32)
def _flat_names(modules: frozenset[str], prefix: str) -> Mapping[str, str]:
    names = [name.removeprefix(prefix) for name in modules if name.startswith(prefix)]
    flat: dict[str, str | None] = {}
    for name in names:
        key = name.replace(".", "_")
        flat[key] = None if key in flat else name
    return {key: name for key, name in flat.items() if name is not None}


def _placement(component: str, model: fl.Chain, targets: tuple[str, ...], transform: Any) -> Placement | str:
    if len(targets) != 1 or not isinstance(transform, Identity | Reshape):
        return f"our model splits or fuses this weight ({transform.kind} into {len(targets)} tensor(s))"
    path = targets[0].removesuffix(".weight")
    layer: nn.Module = model.get_submodule(path)
    op = layer_op(layer)
    plain = op is not None and (op.groups, op.dilation) == (1, (1, 1))
    if op is None or not plain or (op.kind.endswith("norm") and not isinstance(transform, Identity)):
        return f"{path} is a {type(layer).__name__}: only Linear, plain Conv2d and norm layers take LoRAs"
    return Placement(component, path, op)


# -- resolving a base ---------------------------------------------------------------------------------


def _lora_family(name: str) -> Family:
    found = registry.family(name)
    if not found.lora_parts:
        raise ConfigError(f"family {found.name!r} declares no parts LoRAs may target", hint=base_hint())
    return found


def family_base(family: str) -> LoraBase:
    """A family at its full-size upstream configs."""
    found = _lora_family(family)
    models = tuple(BaseModel(c, c.synthetic_configs("full")) for c in found.lora_conversions())
    return LoraBase(found.name, models, f"{found.name} (full-size configs)")


def base_model_of(config: object, model_class: type) -> BaseModel:
    """The declared conversion that builds `model_class` with this config, with its upstream configs."""
    for family in registry.families().values():
        for conversion in family.lora_conversions():
            if conversion.build_target is model_class and conversion.family_check(config) is None:
                return BaseModel(conversion, _upstream_configs(conversion, config))
    raise ConfigError(
        f"no declared conversion that LoRAs fit builds a {model_class.__name__} with this config"
    )


def _upstream_configs(conversion: Conversion, config: object) -> dict[str, dict[str, Any]]:
    if conversion.upstream_configs_of is None:
        raise ConfigError(
            f"{conversion.name} cannot turn our {type(config).__name__} back into upstream configs"
        )
    upstream = conversion.upstream_configs_of(config)
    if conversion.derive_config(upstream) != config:
        raise ConfigError(f"our {type(config).__name__} does not map back to an upstream config")
    return upstream


def model_base(model: nn.Module) -> LoraBase:
    """The base of a chain model in memory (its `config` says which)."""
    config = getattr(model, "config", None)
    if config is None:
        raise ConfigError(f"a {type(model).__name__} has no `config`: cannot tell what it is")
    base = base_model_of(config, type(model))
    return LoraBase(base.conversion.family, (base,), f"{base.conversion.name} in memory")


def _output_base(folders: list[Path], described: Path) -> LoraBase:
    models: list[BaseModel] = []
    for folder in folders:
        data = read_output_config(folder)
        config_class = import_model_class(data["config_class"])
        config = config_from_dict(config_class, data["config"])
        models.append(base_model_of(config, import_model_class(data["model_class"])))
    families = sorted({model.conversion.family for model in models})
    if len(families) != 1:
        raise ConfigError(
            f"the outputs here belong to several families ({', '.join(families)})", file=described
        )
    return LoraBase(families[0], tuple(models), f"{families[0]} outputs in {described}")


def _pipeline_base(folder: Path) -> LoraBase:
    index = read_config(folder / "model_index.json")
    pipeline = index.get("_class_name")
    families = [f for f in registry.families().values() if f.lora_parts and f.pipeline_class == pipeline]
    if not families:
        raise ConfigError(
            f"no family that LoRAs fit uses the pipeline class {pipeline!r}", file=folder / "model_index.json"
        )
    found = families[0]
    models = tuple(BaseModel(c, _folder_configs(c, folder)) for c in found.lora_conversions())
    return LoraBase(found.name, models, f"{found.name} pipeline {folder}")


def _folder_configs(conversion: Conversion, folder: Path) -> dict[str, dict[str, Any]]:
    source = resolve_source(conversion, folder)
    assert isinstance(source, FolderSource)
    return source.configs


def _lora_outputs(folder: Path) -> list[Path]:
    """Component folders under an output folder holding a model a LoRA can change."""
    names = {c.name for family in registry.families().values() for c in family.lora_conversions()}
    found = []
    for child in sorted(folder.iterdir()):
        if (child / CONFIG_NAME).is_file():
            data = json.loads((child / CONFIG_NAME).read_text(encoding="utf-8"))
            if isinstance(data, dict) and data.get("component") in names:
                found.append(child)
    return found


def resolve_base(base: str | Path) -> LoraBase:
    """A family's name, a converted output folder (one component or several), or a pipeline folder."""
    if is_family_name(str(base)):
        return family_base(str(base))
    path = Path(base)
    if (path / "model_index.json").is_file():
        return _pipeline_base(path)
    if (path / CONFIG_NAME).is_file():
        if "model_class" not in read_config(path / CONFIG_NAME):
            raise ConfigError(
                "an upstream component folder: its siblings are needed too",
                file=path,
                hint="pass the pipeline folder holding it (with model_index.json), or a `zoo convert` output",
            )
        return _output_base([path], path)
    if path.is_dir() and (outputs := _lora_outputs(path)):
        return _output_base(outputs, path)
    raise ConfigError(
        f"cannot use {str(base)!r} as a LoRA base",
        file=path if path.exists() else None,
        hint=base_hint(),
    )


def lora_families() -> list[str]:
    """The families LoRAs fit."""
    return [name for name, family in registry.families().items() if family.lora_parts]


def is_family_name(base: str) -> bool:
    """Whether BASE names a family LoRAs fit (rather than a folder)."""
    return base.replace("-", "_") in lora_families()


def base_hint() -> str:
    """What BASE may be, with the families LoRAs fit."""
    families = ", ".join(lora_families())
    return f"pass a family ({families}), a `zoo convert` output folder, or a diffusers pipeline folder"


__all__ = [
    "BaseModel",
    "LoraBase",
    "Placement",
    "PlacementIndex",
    "base_hint",
    "base_model_of",
    "family_base",
    "is_family_name",
    "lora_families",
    "model_base",
    "resolve_base",
]

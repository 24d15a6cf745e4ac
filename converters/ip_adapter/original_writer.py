"""Write IP-Adapter's original files from diffusers' serialisation of the adapter (for offline tests).

Our own diffusers -> original mapping, written independently of diffusers' loader (which the conversion
replays), so a round trip checks both: the image projection back to the original classes' names
(`proj`, `proj.0/2/3`, or the resampler's `layers.<i>.0.norm1/norm2/to_q/to_kv/to_out` and
`layers.<i>.1.0/1/3`, with `to_k` and `to_v` stacked into `to_kv`), and each processor's `to_k_ip.0` /
`to_v_ip.0` to `ip_adapter.<N>`, N = 2i + 1 for the i-th cross-attention in diffusers' registration
order. Written as flat `.safetensors` (streamed) or as the `.bin` pickle of two state dicts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from converters._checkpoints import CheckpointReader, TensorPlan, open_checkpoint, write_safetensors
from converters.ip_adapter.original import IMAGE_PROJ, IP_ADAPTER
from converters.ip_adapter.reference import (
    PROJECTION_PREFIX,
    SUBFOLDER,
    WEIGHTS_NAME,
    cross_attention_processors,
)

Recipe = tuple[tuple[str, ...], Callable[[list[torch.Tensor]], torch.Tensor]]  # upstream keys, how to combine

_RENAMES = {
    "ImageProjection": {"image_embeds.": "proj.", "norm.": "norm."},
    "IPAdapterFullImageProjection": {"ff.net.0.proj.": "proj.0.", "ff.net.2.": "proj.2.", "norm.": "proj.3."},
}
_RESAMPLER = [
    (re.compile(r"layers\.(\d+)\.ln0\.(.+)"), r"layers.\1.0.norm1.\2"),
    (re.compile(r"layers\.(\d+)\.ln1\.(.+)"), r"layers.\1.0.norm2.\2"),
    (re.compile(r"layers\.(\d+)\.attn\.to_q\.weight"), r"layers.\1.0.to_q.weight"),
    (re.compile(r"layers\.(\d+)\.attn\.to_out\.0\.weight"), r"layers.\1.0.to_out.weight"),
    (re.compile(r"layers\.(\d+)\.ff\.0\.(.+)"), r"layers.\1.1.0.\2"),
    (re.compile(r"layers\.(\d+)\.ff\.1\.net\.0\.proj\.weight"), r"layers.\1.1.1.weight"),
    (re.compile(r"layers\.(\d+)\.ff\.1\.net\.2\.weight"), r"layers.\1.1.3.weight"),
]
_STACKED_KEY_VALUE = re.compile(r"layers\.(\d+)\.attn\.to_k\.weight")


def _first(tensors: list[torch.Tensor]) -> torch.Tensor:
    return tensors[0]


def _stacked(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat(tensors)


def _projection_recipes(class_name: str, keys: list[str]) -> dict[str, Recipe]:
    recipes: dict[str, Recipe] = {}
    for key in keys:
        local = key.removeprefix(PROJECTION_PREFIX)
        if class_name != "IPAdapterPlusImageProjection":
            old, new = next((o, n) for o, n in _RENAMES[class_name].items() if local.startswith(o))
            recipes[IMAGE_PROJ + new + local.removeprefix(old)] = ((key,), _first)
        elif match := _STACKED_KEY_VALUE.fullmatch(local):
            value = key.replace(".attn.to_k.", ".attn.to_v.")
            recipes[f"{IMAGE_PROJ}layers.{match[1]}.0.to_kv.weight"] = ((key, value), _stacked)
        elif ".attn.to_v." not in local:
            renamed = next((p.sub(r, local) for p, r in _RESAMPLER if p.fullmatch(local)), local)
            recipes[IMAGE_PROJ + renamed] = ((key,), _first)
    return recipes


def original_recipes(upstream: Mapping[str, Any], keys: list[str]) -> dict[str, Recipe]:
    """Original key -> (the upstream keys it is made of, how), for a reference's tensors `keys`."""
    projection_keys = [key for key in keys if key.startswith(PROJECTION_PREFIX)]
    recipes = _projection_recipes(upstream["image_projection"]["_class_name"], projection_keys)
    for index, (name, _channels) in enumerate(cross_attention_processors(upstream["unet"])):
        number = 2 * index + 1
        for kind in ("k", "v"):
            recipes[f"{IP_ADAPTER}{number}.to_{kind}_ip.weight"] = (
                (f"{name}.to_{kind}_ip.0.weight",),
                _first,
            )
    return recipes


def _read(pipeline_folder: Path) -> tuple[dict[str, Any], Path]:
    folder = pipeline_folder / SUBFOLDER if (pipeline_folder / SUBFOLDER).is_dir() else pipeline_folder
    return json.loads((folder / "config.json").read_text(encoding="utf-8")), folder / WEIGHTS_NAME


def write_original_file(pipeline_folder: Path, out_file: Path) -> Path:
    """The flat original `.safetensors` of the adapter in `pipeline_folder` (streamed, one tensor at a time)."""
    upstream, weights = _read(pipeline_folder)
    with open_checkpoint(weights) as reader:
        recipes = original_recipes(upstream, reader.keys())
        plans = [_plan(name, recipe, reader) for name, recipe in recipes.items()]
        write_safetensors(out_file, plans, {"format": "pt"})
    return out_file


def _plan(name: str, recipe: Recipe, reader: CheckpointReader) -> TensorPlan:
    inputs, make = recipe
    shape = tuple(make([torch.empty(reader.shape(key), device="meta") for key in inputs]).shape)
    return TensorPlan(name, shape, reader.dtype(inputs[0]), lambda: make([reader.get(key) for key in inputs]))


def original_state_dicts(pipeline_folder: Path) -> dict[str, dict[str, torch.Tensor]]:
    """`{"image_proj": {...}, "ip_adapter": {...}}`, as the original `.bin` files pickle them (in memory)."""
    upstream, weights = _read(pipeline_folder)
    nested: dict[str, dict[str, torch.Tensor]] = {"image_proj": {}, "ip_adapter": {}}
    with open_checkpoint(weights) as reader:
        for name, (inputs, make) in original_recipes(upstream, reader.keys()).items():
            group, _, local = name.partition(".")
            nested[group][local] = make([reader.get(key) for key in inputs]).clone()
    return nested


def write_original_bin(pipeline_folder: Path, out_file: Path) -> Path:
    """The original `.bin` pickle of the adapter in `pipeline_folder`."""
    torch.save(original_state_dicts(pipeline_folder), out_file)
    return out_file


__all__ = ["original_recipes", "original_state_dicts", "write_original_bin", "write_original_file"]

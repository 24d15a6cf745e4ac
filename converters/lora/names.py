"""From the names a LoRA file gives its entries to upstream (diffusers / transformers) module names.

- kohya and LyCORIS names (`lora_unet_down_blocks_0_..._to_q`, `lycoris_...`) are the module's path with
  `_` for `.`: they are looked up among the base's upstream module names, written the same way (CLIP's
  `text_model.` may be there or not). Names that are not found, SGM/LDM block names above all, go
  through diffusers' own conversion utilities, on the key names alone (each tensor stands in as its key,
  so nothing is copied): `_maybe_map_sgm_blocks_to_diffusers` (SGM block numbers, which needs the
  base's `layers_per_block`) and `_convert_non_diffusers_lora_to_diffusers`;
- diffusers LoRA layouts are brought to PEFT names (`<module>.lora_A.weight`) by
  `convert_unet_state_dict_to_peft` (UNet) or `convert_state_dict_to_diffusers` +
  `convert_state_dict_to_peft` (text encoders), with the source layout stated rather than guessed;
  diffusers' LoHa, LoKr and DoRA keys already name the module;
- PEFT names are module paths.

`lycoris_*` and PEFT files do not say which model they were made on: their names are read for one
component at a time (`component`).
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from typing import Any

from converters.lora.base import LoraBase
from converters.lora.entries import LoraEntry
from converters.lora.formats import LoraFile
from converters.lora.keys import DIFFUSERS_COMPONENTS, KOHYA_COMPONENTS, LYCORIS_PREFIX, PEFT_PREFIX
from zoo.errors import FormatError

_SGM_BLOCKS = ("input_blocks", "middle_block", "output_blocks")
_DIFFUSERS_BLOCKS = ("down_blocks", "mid_block", "up_blocks")
_PEFT_DOWN = ".lora_A.weight"
_CLIP_PREFIX = "text_model_"


def upstream_module_names(
    lora: LoraFile, base: LoraBase, component: str | None = None
) -> dict[LoraEntry, str]:
    """Each entry's upstream module name, relative to its component (`down_blocks.1.attentions.0...to_q`).

    Args:
        lora: The file.
        base: The base, for its module names and its UNet's `layers_per_block` (SGM block numbers).
        component: The LoRA component to read `lycoris_*` and PEFT names for (`unet`, `text_encoder`...).
    """
    if lora.format in ("kohya", "lycoris_locon"):
        return _kohya_names(lora, base)
    if lora.format == "lycoris":
        flat = {entry: entry.name.removeprefix(LYCORIS_PREFIX) for entry in lora.entries}
        return {entry: _flat_lookup(base, component or "", name) or name for entry, name in flat.items()}
    if lora.format == "diffusers":
        return _diffusers_names(lora)
    if lora.format == "peft":
        return {entry: entry.name.removeprefix(PEFT_PREFIX) for entry in lora.entries}
    raise ValueError(f"{lora.format} files name chain layers, not upstream modules")


def _flat_lookup(base: LoraBase, component: str, flat: str) -> str | None:
    """The module a `_`-joined name means in one component; None when there is none."""
    model = base.model_for(component)
    if model is None:
        return None
    names = model.flat_names(component)
    candidates = (flat, flat.removeprefix(_CLIP_PREFIX), _CLIP_PREFIX + flat)
    return next((names[c] for c in candidates if c in names), None)


def _kohya_prefix(name: str) -> str:
    return max((prefix for prefix in KOHYA_COMPONENTS if name.startswith(prefix)), key=len)


def _kohya_names(lora: LoraFile, base: LoraBase) -> dict[LoraEntry, str]:
    flat = {entry: entry.name.removeprefix(_kohya_prefix(entry.name)) for entry in lora.entries}
    found = {entry: _flat_lookup(base, entry.component, name) for entry, name in flat.items()}
    rest = [entry for entry, module in found.items() if module is None]
    renamed = _diffusers_renamed(lora, rest, base.layers_per_block) if rest else {}
    return {entry: module or renamed.get(entry) or flat[entry] for entry, module in found.items()}


def _diffusers_renamed(
    lora: LoraFile, entries: list[LoraEntry], layers_per_block: int | None
) -> dict[LoraEntry, str]:
    """kohya names diffusers' conversion utilities rename (SGM block names, mostly)."""
    from diffusers.loaders.lora_conversion_utils import (
        _convert_non_diffusers_lora_to_diffusers,  # pyright: ignore[reportPrivateUsage]
        _maybe_map_sgm_blocks_to_diffusers,  # pyright: ignore[reportPrivateUsage]
    )

    sgm = _check_blocks(lora, entries, layers_per_block)
    placeholders: dict[str, Any] = {}
    stand_ins: dict[str, LoraEntry] = {}
    for entry in entries:  # every kind stands in as a LoRA: the conversion renames names only
        down, up = f"{entry.name}.lora_down.weight", f"{entry.name}.lora_up.weight"
        placeholders[down], placeholders[up] = down, up
        stand_ins[down] = entry
    try:
        if sgm:
            config = types.SimpleNamespace(layers_per_block=layers_per_block)
            placeholders = _maybe_map_sgm_blocks_to_diffusers(placeholders, config)
        renamed, _alphas = _convert_non_diffusers_lora_to_diffusers(placeholders)
    except (ValueError, KeyError, IndexError) as error:
        raise FormatError(f"diffusers cannot rename these kohya keys: {error}", file=lora.path) from None
    modules = _modules_of_down(_to_peft(renamed))
    return {entry: modules[down] for down, entry in stand_ins.items() if down in modules}


def _check_blocks(lora: LoraFile, entries: list[LoraEntry], layers_per_block: int | None) -> bool:
    """Whether the names use SGM/LDM blocks; SGM and diffusers block names in one file are an error."""
    unet_names = [entry.name for entry in lora.entries if entry.component == "unet"]
    sgm = [name for name in unet_names if any(block in name for block in _SGM_BLOCKS)]
    if sgm and any(any(block in name for block in _DIFFUSERS_BLOCKS) for name in unet_names):
        raise FormatError(
            f"the file mixes SGM/LDM block names (e.g. {sgm[0]!r}) with diffusers block names",
            file=lora.path,
            hint="diffusers would silently drop the SGM ones; fix the file",
        )
    if sgm and layers_per_block is None:
        raise FormatError("SGM/LDM block names need a base with a UNet to number them", file=lora.path)
    return bool(sgm) and any(any(block in entry.name for block in _SGM_BLOCKS) for entry in entries)


def _diffusers_names(lora: LoraFile) -> dict[LoraEntry, str]:
    lora_entries = [entry for entry in lora.entries if entry.key("lora_down.weight") is not None]
    keys = {_prefixed(key): key for entry in lora_entries for key in (entry.down_key, entry.up_key)}
    modules = _modules_of_down(_to_peft(keys))
    missing = [entry.down_key for entry in lora_entries if entry.down_key not in modules]
    if missing:
        raise FormatError(
            f"diffusers could not rename {len(missing)} key(s), e.g. {missing[:3]}", file=lora.path
        )
    names = {entry: modules[entry.down_key] for entry in lora_entries}
    return names | {entry: entry.name.partition(".")[2] for entry in lora.entries if entry not in names}


def _prefixed(key: str) -> str:
    """The attention-processor layout without `unet.` is the UNet's: say so for the conversion."""
    return key if key.startswith(tuple(DIFFUSERS_COMPONENTS)) else f"unet.{key}"


def _to_peft(state: Mapping[str, Any]) -> dict[str, Any]:
    """Diffusers-layout keys (`unet.` / `text_encoder.` / `text_encoder_2.` prefixed) -> PEFT names."""
    from diffusers.utils.state_dict_utils import (
        StateDictType,
        convert_state_dict_to_diffusers,
        convert_state_dict_to_peft,
        convert_unet_state_dict_to_peft,
    )

    unet = {key: value for key, value in state.items() if key.startswith("unet.")}
    text = {key: value for key, value in state.items() if not key.startswith("unet.")}
    text = convert_state_dict_to_diffusers(text, original_type=StateDictType.DIFFUSERS_OLD)
    text = convert_state_dict_to_peft(text, original_type=StateDictType.DIFFUSERS)
    return {**convert_unet_state_dict_to_peft(unet), **text}


def _modules_of_down(peft_keys: Mapping[str, Any]) -> dict[str, str]:
    """The file's down key (the placeholder value) -> the module the PEFT name it became names."""
    return {
        value: key.removesuffix(_PEFT_DOWN).partition(".")[2]
        for key, value in peft_keys.items()
        if isinstance(value, str) and key.endswith(_PEFT_DOWN)
    }


__all__ = ["upstream_module_names"]

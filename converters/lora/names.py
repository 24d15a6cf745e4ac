"""From the names a LoRA file gives its entries to upstream (diffusers / transformers) module names.

kohya and the older diffusers layouts are renamed by diffusers' own conversion utilities, called on the
key names alone (each tensor stands in as its key, so nothing is copied): kohya keys go through
`_maybe_map_sgm_blocks_to_diffusers` (SGM/LDM block numbers, which needs the base's `layers_per_block`)
and `_convert_non_diffusers_lora_to_diffusers`; then every diffusers layout is brought to PEFT names
(`<module>.lora_A.weight`) by `convert_unet_state_dict_to_peft` (UNet) or `convert_state_dict_to_diffusers`
+ `convert_state_dict_to_peft` (text encoders), with the source layout stated rather than guessed.

Also here: the scale each entry's alpha gives, `alpha / rank` (or `alpha / sqrt(rank)` for rsLoRA),
and 1 when the file gives no alpha, as diffusers and kohya do.
"""

from __future__ import annotations

import math
import re
import types
from collections.abc import Mapping
from typing import Any

from converters.lora.formats import LoraEntry, LoraFile
from zoo.errors import FormatError

_SGM_BLOCKS = ("input_blocks", "middle_block", "output_blocks")
_DIFFUSERS_BLOCKS = ("down_blocks", "mid_block", "up_blocks")
_PEFT_DOWN = ".lora_A.weight"


def upstream_module_names(lora: LoraFile, layers_per_block: int | None) -> dict[LoraEntry, str]:
    """Each entry's upstream module name, relative to its component (`down_blocks.1.attentions.0...to_q`).

    Args:
        lora: The file.
        layers_per_block: The base UNet's, to number SGM/LDM blocks (None when the base has no UNet).
    """
    if lora.format in ("kohya", "lycoris_locon"):
        return _kohya_names(lora, layers_per_block)
    if lora.format == "diffusers":
        return _diffusers_names(lora)
    if lora.format == "peft":
        return {entry: entry.name.removeprefix("base_model.model.") for entry in lora.entries}
    raise ValueError(f"{lora.format} files name chain layers, not upstream modules")


def _kohya_names(lora: LoraFile, layers_per_block: int | None) -> dict[LoraEntry, str]:
    from diffusers.loaders.lora_conversion_utils import (
        _convert_non_diffusers_lora_to_diffusers,  # pyright: ignore[reportPrivateUsage]
        _maybe_map_sgm_blocks_to_diffusers,  # pyright: ignore[reportPrivateUsage]
    )

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
    placeholders: dict[str, Any] = {}
    for entry in lora.entries:
        placeholders[entry.down_key], placeholders[entry.up_key] = entry.down_key, entry.up_key
        if entry.alpha_key is not None:  # diffusers reads alphas with `.item()`; we take them from the file
            placeholders[entry.alpha_key] = lora.tensors[entry.alpha_key]
    try:
        if sgm:
            config = types.SimpleNamespace(layers_per_block=layers_per_block)
            placeholders = _maybe_map_sgm_blocks_to_diffusers(placeholders, config)
        renamed, _alphas = _convert_non_diffusers_lora_to_diffusers(placeholders)
    except (ValueError, KeyError, IndexError) as error:
        raise FormatError(f"diffusers cannot rename these kohya keys: {error}", file=lora.path) from None
    return _modules_from(lora, _to_peft(renamed))


def _diffusers_names(lora: LoraFile) -> dict[LoraEntry, str]:
    keys = {key: key for entry in lora.entries for key in (entry.down_key, entry.up_key)}
    return _modules_from(lora, _to_peft(keys))


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


def _modules_from(lora: LoraFile, peft_keys: Mapping[str, Any]) -> dict[LoraEntry, str]:
    """Read each entry's module back from the PEFT name its down key became."""
    module_of_down = {
        value: key.removesuffix(_PEFT_DOWN).partition(".")[2]
        for key, value in peft_keys.items()
        if isinstance(value, str) and key.endswith(_PEFT_DOWN)
    }
    missing = [entry.down_key for entry in lora.entries if entry.down_key not in module_of_down]
    if missing:
        raise FormatError(
            f"diffusers could not rename {len(missing)} key(s), e.g. {missing[:3]}", file=lora.path
        )
    return {entry: module_of_down[entry.down_key] for entry in lora.entries}


# -- alphas -------------------------------------------------------------------------------------------


def entry_factor(lora: LoraFile, entry: LoraEntry, module: str) -> float:
    """The factor alpha gives the update: `alpha / rank`, `alpha / sqrt(rank)` for rsLoRA, 1 without alpha."""
    rank = lora.rank(entry)
    alpha = lora.alpha(entry)
    settings = lora.adapter_config.get(entry.component) or lora.adapter_config.get("")
    if settings:
        if settings.get("use_dora"):
            raise FormatError("this LoRA is a DoRA (use_dora in its settings): not supported", file=lora.path)
        if alpha is None:
            alpha = float(
                _pattern_value(settings.get("alpha_pattern") or {}, module, settings.get("lora_alpha", rank))
            )
        if settings.get("use_rslora"):
            return alpha / math.sqrt(rank)
    return 1.0 if alpha is None else alpha / rank


def _pattern_value(patterns: Mapping[str, Any], module: str, default: Any) -> Any:
    """PEFT's rule: a pattern applies to a module whose name ends with it, at a dot boundary."""
    for pattern, value in patterns.items():
        if re.match(rf"(.*\.)?({pattern})$", module):
            return value
    return default


__all__ = ["entry_factor", "upstream_module_names"]

"""The factor alpha gives each entry's update, as the library that wrote the file applies it.

- kohya / LyCORIS files (`lora_unet_*`, `lycoris_*`) carry an alpha per module: the factor is
  `alpha / rank`, the rank read from the tensors (LyCORIS stores rsLoRA's alpha already adjusted, so
  the rule is the same); no alpha, an alpha of 0, or a LoKr of two whole factors (no rank) give 1, as
  kohya and LyCORIS do. Full and norm diffs have no factor.
- diffusers and PEFT files take `lora_alpha` (LoRA, DoRA) or `alpha` (LoHa, LoKr) and `r` from their
  settings (`alpha_pattern` / `rank_pattern` per module, PEFT's matching rule), `alpha / r`, or
  `alpha / sqrt(r)` with `use_rslora`; the tensors' rank stands for `r` where they show one. Without
  settings the factor is 1, as diffusers loads such files.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from converters.lora.entries import LoraEntry
from converters.lora.formats import LoraFile

_SELF_CONTAINED = ("kohya", "lycoris_locon", "lycoris")
_ALPHA_SETTING = {"LORA": "lora_alpha", "LOHA": "alpha", "LOKR": "alpha"}


def entry_factor(lora: LoraFile, entry: LoraEntry, module: str) -> float:
    """The factor multiplying the entry's update (folded into its tensors on conversion)."""
    if entry.kind in ("full", "norm"):
        return 1.0
    if lora.format in _SELF_CONTAINED:
        alpha, rank = lora.alpha(entry), lora.rank(entry)
        return 1.0 if alpha is None or alpha == 0 or rank is None else alpha / rank
    return _configured_factor(lora, entry, module)


def _configured_factor(lora: LoraFile, entry: LoraEntry, module: str) -> float:
    settings = lora.adapter_config.get(entry.component) or lora.adapter_config.get("")
    alpha, rank = lora.alpha(entry), lora.rank(entry)
    if not settings:
        return 1.0 if alpha is None or rank is None else alpha / rank
    if rank is None:
        rank = int(_pattern_value(settings.get("rank_pattern") or {}, module, settings.get("r", 1)))
    if alpha is None:
        default = settings.get(_ALPHA_SETTING.get(str(settings.get("peft_type", "LORA")), "lora_alpha"), rank)
        alpha = float(_pattern_value(settings.get("alpha_pattern") or {}, module, default))
    return alpha / math.sqrt(rank) if settings.get("use_rslora") else alpha / rank


def _pattern_value(patterns: Mapping[str, Any], module: str, default: Any) -> Any:
    """PEFT's rule: a pattern applies to a module whose name ends with it, at a dot boundary."""
    for pattern, value in patterns.items():
        if re.match(rf"(.*\.)?({pattern})$", module):
            return value
    return default


__all__ = ["entry_factor"]

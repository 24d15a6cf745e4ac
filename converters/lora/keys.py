"""The key names of LoRA files as trainers write them: naming scheme, component, module name and role.

A key is `<prefix><module name><suffix>`: the prefix says the scheme and (for most) the component, the
suffix the role of the tensor, named as in zoo's format (`zoo.lora.kinds`) plus `alpha`:

- `kohya`: kohya-ss / A1111 / LyCORIS for sd-scripts (`lora_unet_*`, `lora_te_*`, `lora_te1_*`,
  `lora_te2_*`), module names with `_` for `.`, diffusers or SGM/LDM block names;
- `lycoris`: LyCORIS' own networks (`lycoris_*`), which do not say which model they were made on;
- `diffusers`: `unet.*`, `text_encoder.*`, `text_encoder_2.*` (`lora_A`/`lora_B`, `lora.down`/`lora.up`,
  `lora_linear_layer`, DoRA's `lora_magnitude_vector`, LoHa/LoKr factors), and the attention-processor
  layout of diffusers' first training scripts, with or without `unet.`
  (`down_blocks.0...attn1.processor.to_q_lora.down.weight`);
- `peft`: `base_model.model.*` (`PeftModel.save_pretrained`), which does not say the component either.

Variants zoo recognises but does not implement are named (`unsupported_variant`), so a file holding
them is refused with what they are.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal

from zoo.lora.kinds import ROLES

Scheme = Literal["kohya", "lycoris", "diffusers", "peft"]

KOHYA_COMPONENTS = {"lora_unet_": "unet", "lora_te_": "text_encoder", "lora_te1_": "text_encoder"}
KOHYA_COMPONENTS["lora_te2_"] = "text_encoder_2"
LYCORIS_PREFIX = "lycoris_"
DIFFUSERS_COMPONENTS = {"unet.": "unet", "text_encoder.": "text_encoder", "text_encoder_2.": "text_encoder_2"}
PEFT_PREFIX = "base_model.model."
# diffusers' first training scripts saved the UNet's attention processors without a `unet.` prefix.
LEGACY_UNET_BLOCKS = {"down_blocks.": "unet", "mid_block.": "unet", "up_blocks.": "unet"}

_FACTORS = {f".{role}": role for kind in ("loha", "lokr") for role in ROLES[kind]}
LYCORIS_SUFFIXES: dict[str, str] = {f".{role}": role for roles in ROLES.values() for role in roles}
LYCORIS_SUFFIXES.update({".alpha": "alpha", ".dora_scale": "dora_scale"})
_PROCESSOR_SUFFIXES = {"_lora.down.weight": "lora_down.weight", "_lora.up.weight": "lora_up.weight"}
DIFFUSERS_SUFFIXES: dict[str, str] = {
    ".lora_A.weight": "lora_down.weight",
    ".lora_B.weight": "lora_up.weight",
    ".lora.down.weight": "lora_down.weight",
    ".lora.up.weight": "lora_up.weight",
    ".lora_linear_layer.down.weight": "lora_down.weight",
    ".lora_linear_layer.up.weight": "lora_up.weight",
    **_PROCESSOR_SUFFIXES,  # attention processors: `attn1.processor.to_q_lora.down.weight`
    ".alpha": "alpha",
    ".lora_magnitude_vector": "lora_magnitude_vector",
    **_FACTORS,
}
PEFT_SUFFIXES: dict[str, str] = {
    ".lora_A.weight": "lora_down.weight",
    ".lora_B.weight": "lora_up.weight",
    ".lora_magnitude_vector": "lora_magnitude_vector",
    **_FACTORS,
}

_LAYOUTS: tuple[tuple[Scheme, Mapping[str, str], Mapping[str, str]], ...] = (
    ("kohya", KOHYA_COMPONENTS, LYCORIS_SUFFIXES),
    ("lycoris", {LYCORIS_PREFIX: ""}, LYCORIS_SUFFIXES),
    ("diffusers", DIFFUSERS_COMPONENTS, DIFFUSERS_SUFFIXES),
    ("diffusers", LEGACY_UNET_BLOCKS, _PROCESSOR_SUFFIXES),
    ("peft", {PEFT_PREFIX: ""}, PEFT_SUFFIXES),
)

# Keys of variants we recognise but do not implement, with what they are.
_UNSUPPORTED = (
    (re.compile(r"\.(oft_blocks|rescale)$"), "LyCORIS OFT / BOFT (oft_blocks)"),
    (re.compile(r"\.(a1|a2|b1|b2|bm)\.weight$"), "LyCORIS GLoRA (a1/a2/b1/b2)"),
    (re.compile(r"\.on_input$"), "LyCORIS (IA)³"),
    (re.compile(r"\.(lambda_layer|q_layer\.weight|p_layer\.weight)$"), "LyCORIS T-LoRA"),
    (re.compile(r"\.(oft_R(\.weight)?|oft_s)$"), "peft OFT"),
    (re.compile(r"\.boft_[Rs]$"), "peft BOFT"),
    (re.compile(r"\.ia3_l$"), "peft (IA)³"),
    (re.compile(r"\.(bias_indices|bias_values|bias_size)$"), "LyCORIS sparse bias diffs"),
    (re.compile(r"\.lora_B\.bias$"), "LoRA with a bias (lora_bias)"),
    (re.compile(r"\.lora_embedding_[AB]$"), "LoRA on embeddings"),
)


def _split(key: str, prefixes: Mapping[str, str], suffixes: Mapping[str, str]) -> tuple[str, str, str] | None:
    """(component, name, role) of a key in a prefix/suffix layout, or None when it does not fit."""
    component = next((c for prefix, c in prefixes.items() if key.startswith(prefix)), None)
    suffix = max((s for s in suffixes if key.endswith(s)), key=len, default=None)
    if component is None or suffix is None:
        return None
    return component, key.removesuffix(suffix), suffixes[suffix]


def key_format(key: str) -> tuple[Scheme, str, str, str] | None:
    """(scheme, component, name, role) of one key, or None when it fits no scheme.

    The component is "" for schemes that do not name one (`lycoris`, `peft`).
    """
    for scheme, prefixes, suffixes in _LAYOUTS:
        found = _split(key, prefixes, suffixes)
        if found is not None:
            return (scheme, *found)
    return None


def unsupported_variant(key: str) -> str | None:
    """What variant a key belongs to, when it is one we recognise but do not implement."""
    return next((what for pattern, what in _UNSUPPORTED if pattern.search(key)), None)


__all__ = [
    "DIFFUSERS_COMPONENTS",
    "KOHYA_COMPONENTS",
    "LEGACY_UNET_BLOCKS",
    "LYCORIS_PREFIX",
    "PEFT_PREFIX",
    "Scheme",
    "key_format",
    "unsupported_variant",
]

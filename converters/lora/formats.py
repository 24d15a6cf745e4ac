"""LoRA files as trainers write them: which format a file is, and its entries, checked.

Formats are told apart by their key names alone, every key must fit the one format found, and a file
that fits none, or mixes several, is refused with examples of the keys at fault:

- `kohya`: kohya-ss / A1111 (`lora_unet_*`, `lora_te_*`, `lora_te1_*`, `lora_te2_*`, each with
  `.lora_down.weight`, `.lora_up.weight` and an optional `.alpha`), with diffusers or SGM/LDM block names.
- `lycoris_locon`: the same keys, with convolution kernels in `lora_down` (LyCORIS LoCon).
- `diffusers`: `unet.*`, `text_encoder.*`, `text_encoder_2.*` with `lora_A`/`lora_B`, `lora.down`/`lora.up`,
  `lora_linear_layer.down`/`.up` or the old attention-processor `to_q_lora.down`; alphas from the
  `lora_adapter_metadata` diffusers writes into the header, when present.
- `peft`: `base_model.model.*.lora_A/lora_B.weight` (`PeftModel.save_pretrained`), alphas from the
  `adapter_config.json` next to the file, when present.
- `zoo`: what `zoo convert lora` writes (see `converters.lora.files`).

An entry is one low-rank update: a down and an up tensor and an optional alpha, under the name the
file gives the module it changes. Which upstream module that is comes later (`converters.lora.names`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from converters._checkpoints import open_checkpoint
from zoo.errors import FormatError, TensorValueError
from zoo.formats import FORMAT_KEY
from zoo.formats import LORA_FORMAT as ZOO_FORMAT
from zoo.hub import sha256_file

LoraFormat = Literal["kohya", "lycoris_locon", "diffusers", "peft", "zoo"]
Role = Literal["down", "up", "alpha"]

DIFFUSERS_METADATA_KEY = "lora_adapter_metadata"  # diffusers.loaders.lora_base.LORA_ADAPTER_METADATA_KEY
PEFT_CONFIG_NAME = "adapter_config.json"
SUPPORTED = (
    "kohya/A1111 (lora_unet_*, lora_te*_* with lora_down/lora_up/alpha), LyCORIS LoCon, "
    "diffusers (unet.*, text_encoder*.* with lora_A/lora_B or lora.down/lora.up), "
    "PEFT (base_model.model.*.lora_A/lora_B)"
)

KOHYA_COMPONENTS = {"lora_unet_": "unet", "lora_te_": "text_encoder", "lora_te1_": "text_encoder"}
KOHYA_COMPONENTS["lora_te2_"] = "text_encoder_2"
KOHYA_ROLES: dict[str, Role] = {".lora_down.weight": "down", ".lora_up.weight": "up", ".alpha": "alpha"}
DIFFUSERS_COMPONENTS = {"unet.": "unet", "text_encoder.": "text_encoder", "text_encoder_2.": "text_encoder_2"}
DIFFUSERS_ROLES: dict[str, Role] = {
    ".lora_A.weight": "down",
    ".lora_B.weight": "up",
    ".lora.down.weight": "down",
    ".lora.up.weight": "up",
    ".lora_linear_layer.down.weight": "down",
    ".lora_linear_layer.up.weight": "up",
    "_lora.down.weight": "down",  # attention processors: `attn1.processor.to_q_lora.down.weight`
    "_lora.up.weight": "up",
    ".alpha": "alpha",
}
PEFT_PREFIX = "base_model.model."
PEFT_ROLES: dict[str, Role] = {".lora_A.weight": "down", ".lora_B.weight": "up"}

# Keys of LoRA variants we recognise but do not implement, with what they are.
_UNSUPPORTED = (
    (re.compile(r"\.(hada_w[12]_[ab]|hada_t[12])$"), "LyCORIS LoHa"),
    (re.compile(r"\.(lokr_w[12](_[ab])?|lokr_t2)$"), "LyCORIS LoKr"),
    (re.compile(r"\.lora_mid\.weight$"), "LyCORIS LoCon with a Tucker/CP middle (lora_mid)"),
    (re.compile(r"(\.dora_scale|\.lora_magnitude_vector(\.\w+)?)$"), "DoRA"),
    (re.compile(r"\.(diff|diff_b|bias_indices|bias_values|bias_size)$"), "LyCORIS full/bias diffs"),
    (re.compile(r"\.lora_B\.bias$"), "LoRA with a bias (lora_bias)"),
    (re.compile(r"\.lora_embedding_[AB]$"), "LoRA on embeddings"),
)


@dataclass(frozen=True)
class LoraEntry:
    """One low-rank update as the file stores it.

    Attributes:
        name: The file's name for the module it changes (its keys less their down/up suffix).
        component: `unet`, `text_encoder` or `text_encoder_2`; "" where the format names none (PEFT).
        down_key: The key of the down (A) tensor.
        up_key: The key of the up (B) tensor.
        alpha_key: The key of its alpha, when the file stores one per entry.
    """

    name: str
    component: str
    down_key: str
    up_key: str
    alpha_key: str | None = None


@dataclass(frozen=True)
class LoraFile:
    """A LoRA file, read and checked: its format, entries and tensors.

    Attributes:
        path: The file.
        format: The format found from its keys.
        entries: Its updates, sorted by name.
        tensors: Every tensor of the file (LoRA files are small enough to hold).
        metadata: The safetensors header metadata.
        adapter_config: PEFT's `adapter_config.json` next to the file, or diffusers' header metadata for
            each component (`{"unet": {...}}`); empty when the file carries no alphas this way.
        sha256: sha256 of the file.
    """

    path: Path
    format: LoraFormat
    entries: tuple[LoraEntry, ...]
    tensors: Mapping[str, torch.Tensor]
    metadata: Mapping[str, str]
    adapter_config: Mapping[str, Mapping[str, Any]]
    sha256: str

    def rank(self, entry: LoraEntry) -> int:
        return self.tensors[entry.down_key].shape[0]

    def alpha(self, entry: LoraEntry) -> float | None:
        """The entry's own alpha, when the file stores one."""
        return None if entry.alpha_key is None else float(self.tensors[entry.alpha_key].item())


# -- classifying keys ---------------------------------------------------------------------------------


def _split(key: str, prefixes: Mapping[str, str], roles: Mapping[str, Role]) -> tuple[str, str, Role] | None:
    """(component, name, role) of a key in a prefix/suffix format, or None when it does not fit."""
    component = next((c for prefix, c in prefixes.items() if key.startswith(prefix)), None)
    suffix = next((s for s in roles if key.endswith(s)), None)
    if component is None or suffix is None:
        return None
    return component, key.removesuffix(suffix), roles[suffix]


_LAYOUTS: tuple[tuple[LoraFormat, Mapping[str, str], Mapping[str, Role]], ...] = (
    ("kohya", KOHYA_COMPONENTS, KOHYA_ROLES),
    ("diffusers", DIFFUSERS_COMPONENTS, DIFFUSERS_ROLES),
    ("peft", {PEFT_PREFIX: ""}, PEFT_ROLES),
)


def key_format(key: str) -> tuple[LoraFormat, str, str, Role] | None:
    """(format, component, name, role) of one key, or None when it fits no format."""
    for format, prefixes, roles in _LAYOUTS:
        found = _split(key, prefixes, roles)
        if found is not None:
            return (format, *found)
    return None


def unsupported_variant(key: str) -> str | None:
    """What LoRA variant a key belongs to, when it is one we recognise but do not implement."""
    return next((what for pattern, what in _UNSUPPORTED if pattern.search(key)), None)


def detect_lora_format(keys: Sequence[str], file: Path | None = None) -> LoraFormat:
    """The one format every key fits; an error with examples when keys fit none, or several formats."""
    if not keys:
        raise FormatError("the file holds no tensors: not a LoRA", file=file)
    variants = {what: key for key in keys if (what := unsupported_variant(key)) is not None}
    if variants:
        listed = ", ".join(f"{what} (e.g. {key!r})" for what, key in sorted(variants.items()))
        raise FormatError(f"this LoRA uses variants zoo does not support: {listed}", file=file, hint=_HINT)
    found = {key: key_format(key) for key in keys}
    unknown = [key for key, layout in found.items() if layout is None]
    if unknown:
        raise FormatError(
            f"{len(unknown)} of {len(keys)} key(s) fit no LoRA format zoo reads: {_examples(unknown)}",
            file=file,
            tensor=unknown[0],
            hint=_HINT,
        )
    by_format: dict[LoraFormat, list[str]] = {}
    for key, layout in found.items():
        assert layout is not None
        by_format.setdefault(layout[0], []).append(key)
    if len(by_format) > 1:
        parts = "; ".join(f"{fmt} ({len(ks)} keys, e.g. {_examples(ks, 2)})" for fmt, ks in by_format.items())
        raise FormatError(f"the file mixes LoRA formats: {parts}", file=file, hint="one file, one format")
    return next(iter(by_format))


_HINT = f"supported: {SUPPORTED}"


def _examples(keys: Sequence[str], shown: int = 5) -> str:
    more = f" (+{len(keys) - shown} more)" if len(keys) > shown else ""
    return ", ".join(repr(key) for key in sorted(keys)[:shown]) + more


# -- entries ------------------------------------------------------------------------------------------


def group_entries(keys: Sequence[str], file: Path | None = None) -> tuple[LoraEntry, ...]:
    """Pair every down with its up (and alpha); a half without its partner is an error."""
    groups: dict[tuple[str, str], dict[Role, str]] = {}
    for key in keys:
        found = key_format(key)
        assert found is not None  # detect_lora_format ran first
        _format, component, name, role = found
        roles = groups.setdefault((component, name), {})
        if role in roles:
            raise FormatError(f"two keys give the {role} of {name!r}: {roles[role]!r}, {key!r}", file=file)
        roles[role] = key
    incomplete = sorted(
        f"{name} (has {', '.join(sorted(roles))})"
        for (_c, name), roles in groups.items()
        if "down" not in roles or "up" not in roles
    )
    if incomplete:
        raise FormatError(
            f"{len(incomplete)} entries lack a down or an up tensor: {_examples(incomplete)}", file=file
        )
    return tuple(
        LoraEntry(name, component, roles["down"], roles["up"], roles.get("alpha"))
        for (component, name), roles in sorted(groups.items(), key=lambda item: item[0][1])
    )


def check_entries(entries: Sequence[LoraEntry], tensors: Mapping[str, torch.Tensor], file: Path) -> None:
    """Finite values, matching ranks, sensible shapes and scalar alphas."""
    for key, tensor in tensors.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise TensorValueError("the LoRA holds NaN or Inf", file=file, tensor=key)
    for entry in entries:
        down, up = tensors[entry.down_key], tensors[entry.up_key]
        if down.ndim not in (2, 4) or up.ndim not in (2, 4):
            raise FormatError(
                f"down {tuple(down.shape)} / up {tuple(up.shape)}: expected 2-D (Linear) or 4-D (Conv2d)",
                file=file,
                tensor=entry.down_key,
            )
        if down.shape[0] != up.shape[1]:
            raise FormatError(
                f"rank mismatch: lora_down has rank {down.shape[0]}, lora_up has rank {up.shape[1]}",
                file=file,
                tensor=entry.down_key,
                hint=f"{entry.down_key} {tuple(down.shape)} and {entry.up_key} {tuple(up.shape)} must share the rank",
            )
        if up.ndim == 4 and tuple(up.shape[2:]) != (1, 1):
            raise FormatError(
                f"lora_up has a {tuple(up.shape[2:])} kernel; only 1×1 is supported",
                file=file,
                tensor=entry.up_key,
            )
        if entry.alpha_key is not None and tensors[entry.alpha_key].numel() != 1:
            raise FormatError("alpha must be a single number", file=file, tensor=entry.alpha_key)


def _is_locon(entries: Sequence[LoraEntry], tensors: Mapping[str, torch.Tensor]) -> bool:
    return any(
        tensors[e.down_key].ndim == 4 and tuple(tensors[e.down_key].shape[2:]) != (1, 1) for e in entries
    )


# -- reading ------------------------------------------------------------------------------------------


def _adapter_config(format: LoraFormat, path: Path, metadata: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """LoraConfig-like settings (lora_alpha, alpha_pattern, use_rslora) by component, when the file has them."""
    if format == "peft":
        config_path = path.parent / PEFT_CONFIG_NAME
        return (
            {"": _json_object(config_path.read_text(encoding="utf-8"), config_path)}
            if config_path.is_file()
            else {}
        )
    if format == "diffusers" and DIFFUSERS_METADATA_KEY in metadata:
        packed = _json_object(metadata[DIFFUSERS_METADATA_KEY], path)
        by_component: dict[str, dict[str, Any]] = {}
        for key, value in packed.items():
            component, _, field = key.partition(".")
            by_component.setdefault(component, {})[field] = value
        return by_component
    return {}


def _json_object(text: str, file: Path) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError as error:
        raise FormatError(f"LoRA settings are not valid JSON: {error}", file=file) from error
    if not isinstance(data, dict):
        raise FormatError("LoRA settings are not a JSON object", file=file)
    return data  # pyright: ignore[reportUnknownVariableType]


def read_lora(path: str | Path) -> LoraFile:
    """Read a LoRA file of any supported format (safetensors, or a weights-only torch pickle) and check it.

    Raises:
        FormatError: The keys fit no format, mix formats, or belong to an unsupported variant; a down
            or up is missing; down and up ranks differ.
        TensorValueError: A tensor holds NaN or Inf.
    """
    file = Path(path)
    with open_checkpoint(file) as reader:
        keys, metadata = reader.keys(), reader.metadata
        if metadata.get(FORMAT_KEY) == ZOO_FORMAT:
            return LoraFile(
                file, "zoo", (), {k: reader.get(k) for k in keys}, metadata, {}, sha256_file(file)
            )
        format = detect_lora_format(keys, file)
        entries = group_entries(keys, file)
        tensors = {key: reader.get(key) for key in keys}
    check_entries(entries, tensors, file)
    if format == "kohya" and _is_locon(entries, tensors):
        format = "lycoris_locon"
    config = _adapter_config(format, file, metadata)
    return LoraFile(file, format, entries, tensors, metadata, config, sha256_file(file))


__all__ = [
    "SUPPORTED",
    "ZOO_FORMAT",
    "LoraEntry",
    "LoraFile",
    "LoraFormat",
    "check_entries",
    "detect_lora_format",
    "group_entries",
    "key_format",
    "read_lora",
    "unsupported_variant",
]

"""LoRA files as trainers write them: which format a file is, and its entries, checked.

Formats are told apart by their key names alone (`converters.lora.keys`), every key must fit the one
format found, and a file that fits none, mixes several, or holds a variant zoo does not implement is
refused with examples of the keys at fault:

- `kohya`: kohya-ss / A1111 / LyCORIS for sd-scripts (`lora_unet_*`, `lora_te_*`, `lora_te1_*`,
  `lora_te2_*`), with diffusers or SGM/LDM block names;
- `lycoris_locon`: the same keys, plain LoRAs only, with convolution kernels in `lora_down` (LoCon);
- `lycoris`: LyCORIS' own networks (`lycoris_*` keys);
- `diffusers`: `unet.*`, `text_encoder.*`, `text_encoder_2.*`, and the attention-processor layout of the
  first training scripts; alphas from the `lora_adapter_metadata` diffusers writes into the header;
- `peft`: `base_model.model.*` (`PeftModel.save_pretrained`), alphas from the `adapter_config.json` next
  to the file, when present;
- `zoo`: what `zoo convert lora` writes (see `converters.lora.files`).

Whatever the format, each module's update is a LoRA (with a Tucker `lora_mid` or not), LoHa, LoKr, a
full diff or a norm diff, possibly a DoRA (`converters.lora.entries`); a file may mix them module by
module. Which upstream module an entry changes comes later (`converters.lora.names`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from converters._checkpoints import open_checkpoint
from converters.lora.entries import LoraEntry, check_entries, entry_shapes, group_entries
from converters.lora.keys import key_format, unsupported_variant
from zoo.errors import FormatError
from zoo.formats import FORMAT_KEY, LORA_FORMATS
from zoo.formats import LORA_FORMAT as ZOO_FORMAT
from zoo.hub import sha256_file
from zoo.lora.kinds import KIND_NAMES, rank_of

LoraFormat = Literal["kohya", "lycoris_locon", "lycoris", "diffusers", "peft", "zoo"]

DIFFUSERS_METADATA_KEY = "lora_adapter_metadata"  # diffusers.loaders.lora_base.LORA_ADAPTER_METADATA_KEY
PEFT_CONFIG_NAME = "adapter_config.json"
SUPPORTED = (
    "kohya/A1111 (lora_unet_*, lora_te*_*) and LyCORIS (lycoris_*) with LoRA/LoCon (+ Tucker lora_mid), "
    "LoHa, LoKr, DoRA (dora_scale), full (diff) and norm (w_norm) updates; diffusers (unet.*, "
    "text_encoder*.*, attention processors) and PEFT (base_model.model.*) LoRA, DoRA, LoHa and LoKr"
)


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
            each component (`{"unet": {...}}`); empty when the file carries no settings this way.
        sha256: sha256 of the file.
    """

    path: Path
    format: LoraFormat
    entries: tuple[LoraEntry, ...]
    tensors: Mapping[str, torch.Tensor]
    metadata: Mapping[str, str]
    adapter_config: Mapping[str, Mapping[str, Any]]
    sha256: str

    def shapes(self, entry: LoraEntry) -> dict[str, tuple[int, ...]]:
        """The shape of each of the entry's tensors (alpha aside), by role."""
        return entry_shapes(entry, self.tensors)

    def rank(self, entry: LoraEntry) -> int | None:
        """The entry's rank as its tensors show it; None for updates without one."""
        return rank_of(entry.kind, self.shapes(entry))

    def alpha(self, entry: LoraEntry) -> float | None:
        """The entry's own alpha, when the file stores one."""
        return None if entry.alpha_key is None else float(self.tensors[entry.alpha_key].item())

    @property
    def kinds(self) -> dict[str, int]:
        """How many entries of each kind (`LoRA`, `LoHa`, ..., `DoRA` counted apart), by name."""
        counts = Counter(_kind_name(entry) for entry in self.entries)
        return dict(sorted(counts.items()))


def _kind_name(entry: LoraEntry) -> str:
    return f"DoRA ({KIND_NAMES[entry.kind]})" if entry.magnitude_role else KIND_NAMES[entry.kind]


# -- detecting ----------------------------------------------------------------------------------------


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
    by_format: dict[str, list[str]] = {}
    for key, layout in found.items():
        assert layout is not None
        by_format.setdefault(layout[0], []).append(key)
    if len(by_format) > 1:
        parts = "; ".join(f"{fmt} ({len(ks)} keys, e.g. {_examples(ks, 2)})" for fmt, ks in by_format.items())
        raise FormatError(f"the file mixes LoRA formats: {parts}", file=file, hint="one file, one format")
    return next(iter(by_format))  # pyright: ignore[reportReturnType]


_HINT = f"supported: {SUPPORTED}"


def _examples(keys: Sequence[str], shown: int = 5) -> str:
    more = f" (+{len(keys) - shown} more)" if len(keys) > shown else ""
    return ", ".join(repr(key) for key in sorted(keys)[:shown]) + more


def _is_locon(entries: Sequence[LoraEntry], tensors: Mapping[str, torch.Tensor]) -> bool:
    """Plain LoRAs only, one of them with a convolution kernel: kohya-named LoCon."""
    kernels = [tuple(tensors[e.down_key].shape[2:]) for e in entries if e.kind == "lora"]
    plain = all(
        e.kind == "lora" and not e.magnitude_role and e.key("lora_mid.weight") is None for e in entries
    )
    return plain and any(kernel not in ((), (1, 1)) for kernel in kernels)


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
        FormatError: The keys fit no format, mix formats, or belong to an unsupported variant; a
            module's tensors are incomplete, mixed or inconsistent (e.g. down and up ranks differ).
        TensorValueError: A tensor holds NaN or Inf.
    """
    file = Path(path)
    with open_checkpoint(file) as reader:
        keys, metadata = reader.keys(), reader.metadata
        if metadata.get(FORMAT_KEY) in LORA_FORMATS:
            return LoraFile(
                file, "zoo", (), {k: reader.get(k) for k in keys}, metadata, {}, sha256_file(file)
            )
        format: LoraFormat = detect_lora_format(keys, file)
        entries = group_entries(keys, file)
        tensors = {key: reader.get(key) for key in keys}
    check_entries(entries, tensors, file)
    if format == "kohya" and _is_locon(entries, tensors):
        format = "lycoris_locon"
    config = _adapter_config(format, file, metadata)
    return LoraFile(file, format, entries, tensors, metadata, config, sha256_file(file))


__all__ = [
    "DIFFUSERS_METADATA_KEY",
    "PEFT_CONFIG_NAME",
    "SUPPORTED",
    "ZOO_FORMAT",
    "LoraEntry",
    "LoraFile",
    "LoraFormat",
    "detect_lora_format",
    "read_lora",
]

"""The manifest schema (version 1): every field, its type, and the rule that a null says why.

`validate_manifest(data)` lists every way a manifest departs from the schema. Conversion entries and
LoRA entries (`"type": "lora"`) have their own field specs; a value that is not known is `null`, and
the object holding it names the reason in its `unknown` map (a reason for a known value is an error too).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.hub import COMMIT, SHA256

MANIFEST_VERSION = 1
KINDS = ("output", "declared")
ENTRY_TYPES = ("conversion", "lora", "control_lora")
LORA_PREFIX = "lora/"
CONTROL_LORA_PREFIX = "control_lora/"
LORA_PARITY = (
    "LoRA parity is measured by the test suite against peft/diffusers; zoo verify does not re-measure it"
)
LORA_BASE_KINDS = ("family", "folder", "memory")
CONTROL_LORA_PARITY = (
    "Control-LoRA parity is measured by the test suite against a diffusers ControlNetModel holding the "
    "merged weights; zoo verify does not re-measure it"
)


def config_sha256(config: Mapping[str, Any]) -> str:
    """sha256 of a config's canonical JSON (the same digest as `zoo.configs.config_digest`)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class Field:
    types: tuple[type, ...]
    nullable: bool = False
    pattern: re.Pattern[str] | None = None
    choices: tuple[str, ...] = ()


_STR, _INT, _DICT, _LIST = Field((str,)), Field((int,)), Field((dict,)), Field((list,))
_SHA, _NUMBER = Field((str,), pattern=SHA256), Field((int, float))
_OPT_STR, _OPT_INT = Field((str,), nullable=True), Field((int,), nullable=True)
_OPT_SHA = Field((str,), nullable=True, pattern=SHA256)
# The model's weights and config.json, and the assets carried beside them (`converters.declaration.Asset`).
FILE_ROLES = ("weights", "config", "tokenizer", "scheduler", "processor")
_ROLE = Field((str,), choices=FILE_ROLES)

TOP = {
    "manifest_version": _INT,
    "kind": Field((str,), choices=KINDS),
    "zoo_version": _STR,
    "conversions": _DICT,
}
ENTRY = {
    "name": _STR,
    "description": _STR,
    "license": _OPT_STR,
    "target": _DICT,
    "keymap_sha256": _SHA,
    "sources": _LIST,
    "outputs": _LIST,
    "convert": _DICT,
    "parity": Field((dict,), nullable=True),
    "zoo_version": _STR,
    "unknown": _DICT,
}
TARGET = {"model_class": _STR, "config_class": _STR, "config": _DICT, "config_sha256": _SHA}
CONVERT = {"source_kind": Field((str,), choices=("hub", "local")), "source": _STR, "dtype": _STR}
_FILE_FACTS = {"role": _ROLE, "sha256": _OPT_SHA, "size": _OPT_INT, "unknown": _DICT}
HUB_SOURCE = {
    "kind": _STR,
    "repo": _STR,
    "file": _OPT_STR,
    "revision": Field((str,), nullable=True, pattern=COMMIT),
    "license": _OPT_STR,
    **_FILE_FACTS,
}
LOCAL_SOURCE = {"kind": _STR, "path": _STR, "license": _OPT_STR, **_FILE_FACTS}
# Optional on a conversion's sources (older manifests lack them): how the sha256 is known, `content`
# (hashed) or `hf-cache-blob-name` (the HF cache names the file's blob by the sha256 the Hub gave).
SOURCE_EXTRAS = {"sha256_from": Field((str,), choices=("content", "hf-cache-blob-name"))}
CONFIG_OUTPUT = {"file": _STR, **_FILE_FACTS}
WEIGHTS_OUTPUT = {**CONFIG_OUTPUT, "dtype": _OPT_STR, "num_tensors": _INT, "num_params": _INT}
PARITY = {
    "max_relative_error": _NUMBER,
    "relative_errors": _LIST,
    "max_abs_errors": _LIST,
    "device": _STR,
    "dtype": _STR,
    "versions": _DICT,
    "zoo_version": _STR,
    "output_sha256": _SHA,
}
PARITY_VERSIONS = ("torch", "diffusers", "transformers")
# A LoRA entry (`"type": "lora"`): what the LoRA file was, the base it went on, the file written.
LORA_ENTRY = {
    "type": Field((str,), choices=("lora",)),
    "name": _STR,
    "description": _STR,
    "license": _OPT_STR,
    "sources": _LIST,
    "base": _DICT,
    "scale": _NUMBER,
    "outputs": _LIST,
    "convert": _DICT,
    "parity": Field((dict,), nullable=True),
    "zoo_version": _STR,
    "unknown": _DICT,
}
LORA_SOURCE = {
    **LOCAL_SOURCE,
    "role": Field((str,), choices=("lora",)),
    "format": _STR,
    "ranks": _LIST,
    "alpha": _STR,
}
LORA_CONFIG_SOURCE = {**LOCAL_SOURCE, "role": Field((str,), choices=("config",))}
LORA_BASE = {
    "kind": Field((str,), choices=LORA_BASE_KINDS),
    "source": _OPT_STR,
    "family": _STR,
    "models": _LIST,
    "unknown": _DICT,
}
LORA_BASE_MODEL = {"component": _STR, "conversion": _STR, "config_sha256": _SHA, "keymap_sha256": _SHA}
LORA_CONVERT = {
    "source": _STR,
    "base": _OPT_STR,
    "scale": _NUMBER,
    "dtype": Field((str,), choices=("keep",)),
    "unknown": _DICT,
}

# A Control-LoRA entry (`"type": "control_lora"`): a file merged with a base UNet folder into our model.
CONTROL_LORA_ENTRY = {
    "type": Field((str,), choices=("control_lora",)),
    "name": _STR,
    "description": _STR,
    "license": _OPT_STR,
    "license_name": _OPT_STR,
    "license_link": _OPT_STR,
    "sources": _LIST,
    "target": _DICT,
    "outputs": _LIST,
    "convert": _DICT,
    "parity": Field((dict,), nullable=True),
    "zoo_version": _STR,
    "unknown": _DICT,
}
# The file itself, with the declared Hub file it is (by name or sha256), when it is one.
CONTROL_LORA_SOURCE = {
    **LOCAL_SOURCE,
    "role": Field((str,), choices=("control_lora",)),
    "repo": _OPT_STR,
    "file": _OPT_STR,
    "revision": Field((str,), nullable=True, pattern=COMMIT),
}
BASE_FILE_SOURCE = {**LOCAL_SOURCE, "role": Field((str,), choices=("base_weights", "base_config"))}
CONTROL_LORA_CONVERT = {
    "source": _STR,
    "base": _STR,
    "dtype": Field((str,), choices=("keep",)),
    "command": _STR,
    "unknown": _DICT,
}


def validate_manifest(data: Any) -> list[str]:
    """Every way `data` departs from the schema, as `path: problem` strings (empty when valid)."""
    problems: list[str] = []
    if not _fields(data, TOP, "", problems):
        return problems
    if data["manifest_version"] != MANIFEST_VERSION:
        problems.append(f"manifest_version: {data['manifest_version']} is not {MANIFEST_VERSION}")
    for name, entry in data["conversions"].items():
        _validate_entry(name, entry, data["kind"], f"conversions.{name}", problems)
    return problems


def _validate_entry(name: str, entry: Any, kind: str, at: str, problems: list[str]) -> None:
    if isinstance(entry, dict) and entry.get("type", "conversion") not in ENTRY_TYPES:
        problems.append(f"{at}.type: {entry.get('type')!r} is not one of {', '.join(ENTRY_TYPES)}")
        return
    if isinstance(entry, dict) and entry.get("type") == "lora":
        _validate_lora_entry(name, entry, kind, at, problems)
        return
    if isinstance(entry, dict) and entry.get("type") == "control_lora":
        _validate_control_lora_entry(name, entry, kind, at, problems)
        return
    spec = (
        {**ENTRY, "type": Field((str,), choices=("conversion",))}
        if isinstance(entry, dict) and "type" in entry
        else ENTRY
    )
    if not _fields(entry, spec, at, problems, unknown=True):
        return
    if entry["name"] != name:
        problems.append(f"{at}.name: {entry['name']!r} differs from its key")
    _fields(entry["target"], TARGET, f"{at}.target", problems)
    if isinstance(entry["target"].get("config"), dict) and entry["target"].get("config_sha256"):
        if config_sha256(entry["target"]["config"]) != entry["target"]["config_sha256"]:
            problems.append(f"{at}.target.config_sha256: not the digest of target.config")
    _fields(entry["convert"], CONVERT, f"{at}.convert", problems)
    if entry["parity"] is not None and _fields(entry["parity"], PARITY, f"{at}.parity", problems):
        missing = [v for v in PARITY_VERSIONS if not isinstance(entry["parity"]["versions"].get(v), str)]
        if missing:
            problems.append(f"{at}.parity.versions: missing {', '.join(missing)}")
    if not entry["sources"]:
        problems.append(f"{at}.sources: empty")
    for index, source in enumerate(entry["sources"]):
        _validate_source(source, kind, f"{at}.sources[{index}]", problems)
    if [o.get("role") for o in entry["outputs"] if isinstance(o, dict)].count("weights") != 1:
        problems.append(f"{at}.outputs: needs exactly one output with role 'weights'")
    for index, output in enumerate(entry["outputs"]):
        spec = (
            WEIGHTS_OUTPUT if isinstance(output, dict) and output.get("role") == "weights" else CONFIG_OUTPUT
        )
        if _fields(output, spec, f"{at}.outputs[{index}]", problems, unknown=True):
            _check_relative(output["file"], f"{at}.outputs[{index}].file", problems)


def _validate_lora_entry(name: str, entry: dict[str, Any], kind: str, at: str, problems: list[str]) -> None:
    if kind != "output":
        problems.append(f"{at}.type: a {kind} manifest holds model conversions only, not LoRAs")
    if not name.startswith(LORA_PREFIX):
        problems.append(f"{at}: a LoRA entry's name starts with {LORA_PREFIX!r} (registry names never do)")
    if not _fields(entry, LORA_ENTRY, at, problems, unknown=True):
        return
    if entry["name"] != name:
        problems.append(f"{at}.name: {entry['name']!r} differs from its key")
    if entry["parity"] is not None:
        problems.append(f"{at}.parity: must be null for a LoRA ({LORA_PARITY})")
    sources = entry["sources"]
    lora_sources = [s for s in sources if isinstance(s, dict) and s.get("role") == "lora"]
    if len(lora_sources) != 1:
        problems.append(f"{at}.sources: needs exactly one source with role 'lora' (the LoRA file)")
    for index, source in enumerate(sources):
        where = f"{at}.sources[{index}]"
        if not isinstance(source, dict) or source.get("kind") != "local":
            problems.append(f"{where}.kind: a LoRA's sources are local files")
            continue
        spec = LORA_SOURCE if source.get("role") == "lora" else LORA_CONFIG_SOURCE
        if _fields(source, spec, where, problems, unknown=True) and spec is LORA_SOURCE:
            ranks = source["ranks"]
            if not ranks or not all(isinstance(r, int) and not isinstance(r, bool) and r > 0 for r in ranks):
                problems.append(f"{where}.ranks: a non-empty list of positive integers")
    base = entry["base"]
    if _fields(base, LORA_BASE, f"{at}.base", problems, unknown=True):
        if (base["kind"] == "memory") != (base["source"] is None):
            problems.append(f"{at}.base.source: null exactly when the base was a model in memory")
        if not base["models"]:
            problems.append(f"{at}.base.models: empty")
        for index, model in enumerate(base["models"]):
            _fields(model, LORA_BASE_MODEL, f"{at}.base.models[{index}]", problems)
    outputs = entry["outputs"]
    if len(outputs) != 1 or not isinstance(outputs[0], dict) or outputs[0].get("role") != "weights":
        problems.append(f"{at}.outputs: a LoRA entry has exactly one output, with role 'weights'")
    else:
        if _fields(outputs[0], WEIGHTS_OUTPUT, f"{at}.outputs[0]", problems, unknown=True):
            _check_relative(outputs[0]["file"], f"{at}.outputs[0].file", problems)
    recipe = entry["convert"]
    if _fields(recipe, LORA_CONVERT, f"{at}.convert", problems, unknown=True):
        if recipe["scale"] != entry["scale"]:
            problems.append(
                f"{at}.convert.scale: {recipe['scale']} is not the entry's scale {entry['scale']}"
            )
        if lora_sources and recipe["source"] != lora_sources[0].get("path"):
            problems.append(f"{at}.convert.source: not the path of the LoRA source")
        if isinstance(base, dict) and recipe["base"] != base.get("source"):
            problems.append(f"{at}.convert.base: not base.source")


def _validate_control_lora_entry(
    name: str, entry: dict[str, Any], kind: str, at: str, problems: list[str]
) -> None:
    if kind != "output":
        problems.append(f"{at}.type: a {kind} manifest holds model conversions only, not Control-LoRAs")
    if not name.startswith(CONTROL_LORA_PREFIX):
        problems.append(f"{at}: a Control-LoRA entry's name starts with {CONTROL_LORA_PREFIX!r}")
    if not _fields(entry, CONTROL_LORA_ENTRY, at, problems, unknown=True):
        return
    if entry["name"] != name:
        problems.append(f"{at}.name: {entry['name']!r} differs from its key")
    if entry["parity"] is not None:
        problems.append(f"{at}.parity: must be null for a Control-LoRA ({CONTROL_LORA_PARITY})")
    _fields(entry["target"], TARGET, f"{at}.target", problems)
    roles = [s.get("role") if isinstance(s, dict) else None for s in entry["sources"]]
    if roles.count("control_lora") != 1 or roles.count("base_weights") != 1:
        problems.append(f"{at}.sources: needs one 'control_lora' source and one 'base_weights' source")
    for index, source in enumerate(entry["sources"]):
        where = f"{at}.sources[{index}]"
        if not isinstance(source, dict) or source.get("kind") != "local":
            problems.append(f"{where}.kind: a Control-LoRA's sources are local files")
            continue
        spec = CONTROL_LORA_SOURCE if source.get("role") == "control_lora" else BASE_FILE_SOURCE
        _fields(source, spec, where, problems, unknown=True)
    roles = [o.get("role") if isinstance(o, dict) else None for o in entry["outputs"]]
    if sorted(map(str, roles)) != ["config", "weights"]:
        problems.append(f"{at}.outputs: a Control-LoRA entry has a 'weights' and a 'config' output")
    for index, output in enumerate(entry["outputs"]):
        spec = (
            WEIGHTS_OUTPUT if isinstance(output, dict) and output.get("role") == "weights" else CONFIG_OUTPUT
        )
        if _fields(output, spec, f"{at}.outputs[{index}]", problems, unknown=True):
            _check_relative(output["file"], f"{at}.outputs[{index}].file", problems)
    if _fields(entry["convert"], CONTROL_LORA_CONVERT, f"{at}.convert", problems, unknown=True):
        paths = [
            s.get("path") for s in entry["sources"] if isinstance(s, dict) and s.get("role") == "control_lora"
        ]
        if entry["convert"]["source"] not in paths:
            problems.append(f"{at}.convert.source: not the path of the Control-LoRA source")


def _validate_source(source: Any, kind: str, at: str, problems: list[str]) -> None:
    source_kind = source.get("kind") if isinstance(source, dict) else None
    if source_kind not in ("hub", "local"):
        problems.append(f"{at}.kind: must be 'hub' or 'local'")
        return
    if kind == "declared" and source_kind != "hub":
        problems.append(f"{at}.kind: a declared manifest names Hub sources only")
    spec = HUB_SOURCE if source_kind == "hub" else LOCAL_SOURCE
    extras = {key: field for key, field in SOURCE_EXTRAS.items() if key in source}
    _fields(source, {**spec, **extras}, at, problems, unknown=True)


def _fields(
    data: Any, spec: Mapping[str, Field], at: str, problems: list[str], unknown: bool = False
) -> bool:
    """Check an object's fields against a spec; with `unknown`, every null needs a reason and vice versa."""
    if not isinstance(data, dict):
        problems.append(f"{at or '(top)'}: not an object")
        return False
    prefix = f"{at}." if at else ""
    for key in sorted(set(spec) - set(data)):
        problems.append(f"{prefix}{key}: missing")
    for key in sorted(set(data) - set(spec)):
        problems.append(f"{prefix}{key}: not in the schema")
    ok = not (set(spec) - set(data))
    for key, field in spec.items():
        if key in data:
            ok &= _field(data[key], field, f"{prefix}{key}", problems)
    if unknown and ok:
        _check_reasons(data, spec, prefix, problems)
    return ok


def _field(value: Any, field: Field, at: str, problems: list[str]) -> bool:
    if value is None:
        if not field.nullable:
            problems.append(f"{at}: must not be null")
        return field.nullable
    if isinstance(value, bool) or not isinstance(value, field.types):
        problems.append(f"{at}: expected {'/'.join(t.__name__ for t in field.types)}")
        return False
    if field.pattern is not None and not field.pattern.match(value):
        what = "40 lowercase hex digits" if field.pattern is COMMIT else "64 lowercase hex digits"
        problems.append(f"{at}: {value!r} is not {what}")
        return False
    if field.choices and value not in field.choices:
        problems.append(f"{at}: {value!r} is not one of {', '.join(field.choices)}")
        return False
    return True


def _check_reasons(
    data: Mapping[str, Any], spec: Mapping[str, Field], prefix: str, problems: list[str]
) -> None:
    reasons = data["unknown"]
    nulls = {key for key in spec if key != "unknown" and data[key] is None}
    for key in sorted(nulls - set(reasons)):
        problems.append(f"{prefix}{key}: null without a reason in {prefix}unknown")
    for key in sorted(set(reasons) - nulls):
        problems.append(f"{prefix}unknown.{key}: a reason for a value that is not null")
    for key, reason in reasons.items():
        if not isinstance(reason, str) or not reason.strip():
            problems.append(f"{prefix}unknown.{key}: the reason must be a non-empty string")


def _check_relative(file: str, at: str, problems: list[str]) -> None:
    if file.startswith("/") or ".." in Path(file).parts:
        problems.append(f"{at}: {file!r} must be a relative path inside the output folder")


__all__ = [
    "CONTROL_LORA_PARITY",
    "CONTROL_LORA_PREFIX",
    "ENTRY_TYPES",
    "FILE_ROLES",
    "KINDS",
    "LORA_BASE_KINDS",
    "LORA_PARITY",
    "LORA_PREFIX",
    "MANIFEST_VERSION",
    "config_sha256",
    "validate_manifest",
]

"""An on-disk cache of traced key maps, so repeated conversions skip building and tracing the models.

Tracing the full SDXL UNet costs 2–5 s and imports diffusers; the key map it produces depends only on
the conversion, the upstream configs, the library versions and our own code. The cache key hashes all
four (our code as the bytes of every .py file of `zoo` and `converters`), so any change retraces. A
cached map is still checked against the files being converted (names, shapes) like a fresh one; an
unreadable entry is ignored and replaced.

Location: `$ZOO_CACHE/keymaps`, else `$XDG_CACHE_HOME/zoo/keymaps`, else `~/.cache/zoo/keymaps`.
`ZOO_NO_CACHE=1` turns it off.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from converters._convert.cache_location import cache_dir
from converters._tracing import KeyMap
from zoo.errors import FormatError
from zoo.files import write_text_atomic

_PACKAGES = ("zoo", "converters")
_LIBRARIES = ("torch", "diffusers", "transformers")


@dataclass(frozen=True)
class CachedTrace:
    keymap: KeyMap
    model_class: str


@functools.cache
def code_digest() -> str:
    """sha256 over the source of the packages that build models and key maps."""
    digest = hashlib.sha256()
    repo = Path(__file__).resolve().parents[1]
    for package in _PACKAGES:
        for path in sorted((repo / package).rglob("*.py")):
            digest.update(str(path.relative_to(repo)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    """The versions of the libraries whose code decides key maps and single-file recipes."""
    versions: dict[str, str] = {}
    for library in _LIBRARIES:
        try:
            versions[library] = metadata.version(library)
        except metadata.PackageNotFoundError:
            versions[library] = "absent"
    return versions


def cache_key(name: str, configs: Any) -> str:
    """The entry name for one conversion of one set of upstream configs with this code and libraries."""
    identity = {"name": name, "configs": configs, "code": code_digest(), "versions": library_versions()}
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def load(name: str, configs: Any) -> CachedTrace | None:
    """The cached key map, or None (no cache, no entry, or an unreadable entry)."""
    folder = cache_dir()
    if folder is None:
        return None
    path = folder / f"{cache_key(name, configs)}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return CachedTrace(KeyMap.from_json(json.dumps(data["keymap"])), str(data["model_class"]))
    except (OSError, ValueError, KeyError, TypeError, FormatError):
        return None


def store(name: str, configs: Any, keymap: KeyMap, model_class: str) -> None:
    """Save a key map (atomically); a cache that cannot be written is not an error."""
    folder = cache_dir()
    if folder is None:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"name": name, "model_class": model_class, "keymap": keymap.to_dict()})
        write_text_atomic(folder / f"{cache_key(name, configs)}.json", text)
    except OSError:
        return


__all__ = ["CachedTrace", "cache_key", "code_digest", "library_versions", "load", "store"]

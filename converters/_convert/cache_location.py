"""Where zoo caches what it can derive again (key maps, single-file maps, source hashes).

`$ZOO_CACHE/<kind>`, else `$XDG_CACHE_HOME/zoo/<kind>`, else `~/.cache/zoo/<kind>`; `ZOO_NO_CACHE=1`
turns every cache off. Imports nothing heavy: the command line asks before torch is imported.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(kind: str = "keymaps") -> Path | None:
    """Where entries of a kind (`keymaps`, `single_file_maps`) are cached, or None when caching is off."""
    if os.environ.get("ZOO_NO_CACHE"):
        return None
    root = os.environ.get("ZOO_CACHE")
    if root is None:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = str(Path(xdg) / "zoo")
    return Path(root) / kind


__all__ = ["cache_dir"]

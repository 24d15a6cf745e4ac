"""Build a Hugging Face cache in its real on-disk layout, for offline tests of Hub code."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path


def add_to_cache(
    cache: Path, repo: str, revision: str, files: Mapping[str, bytes], *, main: bool = False
) -> Path:
    """Files into an HF cache: blobs by content hash, snapshot symlinks, and refs/main if asked."""
    storage = cache / f"models--{repo.replace('/', '--')}"
    for name, content in files.items():
        blob = storage / "blobs" / hashlib.sha256(content).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(content)
        link = storage / "snapshots" / revision / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    if main:
        (storage / "refs").mkdir(parents=True, exist_ok=True)
        (storage / "refs" / "main").write_text(revision)
    return storage / "snapshots" / revision

"""The Hugging Face Hub: pinned downloads into the standard cache, verified by sha256.

Uses the standard HF cache (`HF_HOME`, `HF_HUB_CACHE`) and honours `HF_HUB_OFFLINE`: with a populated
cache everything works offline. Tokens come from the environment or the HF login and never appear in
messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from zoo.errors import HubError

OFFLINE_HINT = (
    "pass --source PATH (a local pipeline folder or checkpoint), or --synthetic tiny to try it offline"
)


def download_pipeline_parts(
    repo: str, subfolders: Sequence[str], revision: str | None = None
) -> tuple[Path, str | None]:
    """Fetch (or find in the cache) the config and weights of some subfolders of a pipeline repo.

    Returns the local snapshot folder and the revision it resolved to.
    """
    from huggingface_hub import snapshot_download

    patterns = ["model_index.json"]
    for sub in subfolders:
        base = f"{sub}/" if sub else ""
        patterns += [f"{base}config.json", f"{base}*.safetensors", f"{base}*.safetensors.index.json"]
    try:
        folder = snapshot_download(repo, revision=revision, allow_patterns=patterns)
    except Exception as error:  # the hub client raises many unrelated types for "unreachable"
        raise HubError(
            f"cannot get {repo}{'@' + revision if revision else ''} from the Hub or the local cache: "
            f"{type(error).__name__}",
            hint=OFFLINE_HINT,
        ) from None
    return Path(folder), revision or Path(folder).name


__all__ = ["OFFLINE_HINT", "download_pipeline_parts"]

"""The Hugging Face Hub: pinned downloads into the standard cache, verified by sha256; one-commit uploads.

Downloads go through `hf_hub_download` into the standard HF cache (`HF_HOME`, `HF_HUB_CACHE`) and honour
`HF_HUB_OFFLINE`: with a populated cache everything works offline, and a 40-hex revision resolves to
its own snapshot whatever `refs/main` says. Every file with a known sha256 is hashed (streaming) before
anything reads it. Recording what a conversion read needs no second pass: in the cache an LFS file's blob
is named by its sha256, the Hub's own (`hash_file`). Tokens come from the environment or the HF login, are never passed around by zoo, and are scrubbed from
every message.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import socket
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from zoo.errors import HashMismatchError, HubError, ZooError
from zoo.files import map_read_only

HASH_WINDOW = 64 * 1024 * 1024  # a multiple of mmap.ALLOCATIONGRANULARITY on every system
COMMIT = re.compile(r"^[0-9a-f]{40}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
WEIGHT_NAMES = ("diffusion_pytorch_model.safetensors", "model.safetensors")
OFFLINE_HINT = (
    "pass --source PATH (a local pipeline folder or checkpoint), or --synthetic tiny to try it offline"
)


class Pin(Protocol):
    """A pinned Hub file (`converters.declaration.PinnedFile` is one); None means unknown."""

    @property
    def repo(self) -> str: ...
    @property
    def filename(self) -> str: ...
    @property
    def revision(self) -> str | None: ...
    @property
    def sha256(self) -> str | None: ...
    @property
    def size(self) -> int | None: ...


# -- hashing ----------------------------------------------------------------------------------------

HashOrigin = Literal["content", "hf-cache-blob-name"]


@dataclass(frozen=True)
class FileHash:
    """A file's sha256 and size, and how the sha256 is known.

    Attributes:
        sha256: Hex sha256.
        size: Bytes.
        origin: `content` (the bytes were hashed) or `hf-cache-blob-name` (the HF cache names the file's
            blob by it: the sha256 the Hub gave for an LFS file; not read again).
    """

    sha256: str
    size: int
    origin: HashOrigin


def sha256_file(path: Path, stop: threading.Event | None = None) -> str:
    """sha256 of a file, hashed from a read-only mapping 64 MiB at a time (never whole in memory).

    Hashing mapped pages copies nothing: measured on the 2-core machine for the 5.1 GB SDXL UNet beside
    an import of torch, 6.1-6.5 s of CPU against 7.8-9.9 s reading the same file into a buffer. One step
    is long enough (about 40 ms) that handing the GIL back and forth costs little.

    Raises:
        InterruptedError: `stop` was set while hashing.
    """
    digest = hashlib.sha256()
    with Path(path).open("rb") as stream:
        size = os.fstat(stream.fileno()).st_size
        for start in range(0, size, HASH_WINDOW):
            if stop is not None and stop.is_set():
                raise InterruptedError(f"hashing {path} was stopped")
            with map_read_only(stream.fileno(), start, min(HASH_WINDOW, size - start)) as window:
                digest.update(window)
    return digest.hexdigest()


def cached_blob_sha256(path: Path) -> str | None:
    """The sha256 of a file of an HF cache snapshot, from its blob's name; None when it is not named so.

    The cache keeps each file once, as `blobs/<name>`, and links it from `snapshots/<commit>/<file>`: an
    LFS file's blob is named by its sha256 (64 hex digits), a git file's by its git sha1 (40), which is
    not a sha256. A copied (not linked) snapshot file, as on systems without symlinks, has no name to use.
    """
    snapshot = _snapshot(path)
    if snapshot is None or not Path(path).is_symlink():
        return None
    storage, _, _ = snapshot
    blob = Path(os.path.realpath(path))
    if blob.parent != Path(os.path.realpath(storage / "blobs")) or not SHA256.match(blob.name):
        return None
    return blob.name


def hash_file(path: Path) -> FileHash:
    """A file's sha256: from its HF cache blob name when it has one, else by reading it."""
    size = Path(path).stat().st_size
    named = cached_blob_sha256(path)
    if named is not None:
        return FileHash(named, size, "hf-cache-blob-name")
    return FileHash(sha256_file(path), size, "content")


def verify_file(path: Path, sha256: str | None, size: int | None = None, *, name: str | None = None) -> str:
    """Check a file against its expected size and sha256 (either may be unknown); returns its sha256.

    The bytes are read even in the HF cache (a blob's name is what the Hub said, not what the disk holds).

    Raises:
        HashMismatchError: naming the file (`name`, else the path) and both values.
    """
    label = name or str(path)
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise HashMismatchError(
            f"size mismatch: expected {size} bytes, got {actual_size}",
            file=label,
            hint="the file is truncated or not the pinned one: delete it and download it again",
        )
    actual = sha256_file(path)
    if sha256 is not None and actual != sha256:
        raise HashMismatchError(
            f"sha256 mismatch: expected {sha256}, got {actual}",
            file=label,
            hint="the file is corrupt or not the pinned one: delete it from the cache and download it again",
        )
    return actual


# -- the local cache --------------------------------------------------------------------------------


@dataclass(frozen=True)
class HubFile:
    """A file of a Hub model repository at one commit."""

    repo: str
    filename: str
    revision: str


def cached_file_origin(path: Path) -> HubFile | None:
    """Which repo, commit and file a path inside an HF cache snapshot is; None for any other path.

    The cache layout is `models--ORG--NAME/snapshots/<40-hex commit>/<file in repo>`.
    """
    snapshot = _snapshot(path)
    if snapshot is None:
        return None
    storage, commit, filename = snapshot
    return HubFile(storage.name.removeprefix("models--").replace("--", "/"), filename, commit)


def _snapshot(path: Path) -> tuple[Path, str, str] | None:
    """(the `models--ORG--NAME` folder, the commit, the file in the repo) of a snapshot path."""
    parts = Path(os.path.abspath(path)).parts
    for index in range(len(parts) - 3, 0, -1):
        folder, snapshots, commit = parts[index - 1 : index + 2]
        if snapshots == "snapshots" and folder.startswith("models--") and COMMIT.match(commit):
            return Path(*parts[:index]), commit, "/".join(parts[index + 2 :])
    return None


def cached_path(repo: str, filename: str, revision: str) -> Path:
    """Where a file at a 40-hex revision sits in the local HF cache (it may not be there)."""
    from huggingface_hub import constants

    folder = "models--" + repo.replace("/", "--")
    return Path(constants.HF_HUB_CACHE) / folder / "snapshots" / revision / filename


# -- downloading ------------------------------------------------------------------------------------


def download_file(
    repo: str, filename: str, revision: str | None, *, sha256: str | None = None, size: int | None = None
) -> Path:
    """A file from the cache (or the Hub) at `revision`, verified against `sha256`/`size` when known."""
    path = _hub_download(repo, filename, revision)
    if sha256 is not None or size is not None:
        verify_file(path, sha256, size, name=f"{repo}@{_commit_of(path) or revision}/{filename}")
    return path


def download_pinned(pin: Pin) -> Path:
    """A pinned file, verified by hash; an unknown revision is an error rather than a silent `main`."""
    if pin.revision is None:
        raise HubError(
            f"{pin.repo}/{pin.filename} has no pinned revision",
            hint="pass --revision explicitly, or pin it in the declaration",
        )
    return download_file(pin.repo, pin.filename, pin.revision, sha256=pin.sha256, size=pin.size)


def download_pipeline_parts(
    repo: str, subfolders: Sequence[str], revision: str | None = None, pins: Iterable[Pin] = ()
) -> tuple[Path, str | None]:
    """Fetch (or find in the cache) `config.json` and the weights of some folders of a repo.

    Files named by a pin at the revision actually resolved are verified by sha256 before they are
    returned. `""` names the repo's top level.

    Returns:
        The local snapshot folder and the 40-hex commit it resolved to.
    """
    pinned = list(pins)
    files: list[Path] = []
    for sub in subfolders:
        base = f"{sub}/" if sub else ""
        files.append(_hub_download(repo, f"{base}config.json", revision))
        files += _download_weights(repo, base, revision)
    commit = _commit_of(files[0])
    for path in files:
        origin = cached_file_origin(path)
        for pin in pinned:
            if origin and pin.repo == repo and pin.filename == origin.filename and pin.revision == commit:
                verify_file(path, pin.sha256, pin.size, name=f"{repo}@{commit}/{pin.filename}")
    return _snapshot_root(files[0], subfolders[0] if subfolders else ""), commit


def download_optional_files(repo: str, filenames: Sequence[str], revision: str | None) -> list[Path]:
    """The files of `filenames` the repo holds at `revision` (from the cache when offline); absent ones skipped."""
    found = [_hub_download(repo, name, revision, missing_ok=True) for name in filenames]
    return [path for path in found if path is not None]


def _download_weights(repo: str, base: str, revision: str | None) -> list[Path]:
    tried: list[str] = []
    for name in WEIGHT_NAMES:
        for candidate in (name, f"{name}.index.json"):
            tried.append(base + candidate)
            path = _hub_download(repo, base + candidate, revision, missing_ok=True)
            if path is not None and candidate.endswith(".index.json"):
                return [path, *_download_shards(repo, base, revision, path)]
            if path is not None:
                return [path]
    raise HubError(
        f"no weights file in {repo}{'@' + revision if revision else ''} (tried {', '.join(tried)})",
        hint=OFFLINE_HINT,
    )


def _download_shards(repo: str, base: str, revision: str | None, index: Path) -> list[Path]:
    import json

    shards = sorted(set(json.loads(index.read_text(encoding="utf-8")).get("weight_map", {}).values()))
    return [_hub_download(repo, base + shard, revision) for shard in shards]


@functools.cache
def hub_resolvable() -> bool:
    """Whether the Hub's host name resolves at all.

    Without a network the Hub client retries for half a minute before giving up; a failed DNS lookup
    answers at once, so we then read the local cache only and fail fast when it lacks the file.
    """
    from urllib.parse import urlparse

    from huggingface_hub import constants

    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        return False
    return True


def _hub_download(repo: str, filename: str, revision: str | None, missing_ok: bool = False) -> Any:
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RemoteEntryNotFoundError

    try:
        local_only = constants.is_offline_mode() or not hub_resolvable()
        return Path(hf_hub_download(repo, filename, revision=revision, local_files_only=local_only))
    except (RemoteEntryNotFoundError, LocalEntryNotFoundError) as error:
        # Online, a "local" miss means the Hub could not be reached: that is an error, not an absence.
        remote, offline = isinstance(error, RemoteEntryNotFoundError), constants.is_offline_mode()
        if missing_ok and (remote or offline):
            return None
        where = f"{repo}{'@' + revision if revision else ''}/{filename}"
        if remote:
            why = "the Hub has no such file"
        elif offline:
            why = "not in the local cache, and HF_HUB_OFFLINE is set"
        else:
            why = "the Hub is unreachable and the file is not in the local cache"
        raise HubError(f"cannot get {where}: {why}", hint=OFFLINE_HINT) from None
    except Exception as error:  # the hub client raises many unrelated types for "unreachable"
        raise HubError(
            f"cannot get {repo}{'@' + revision if revision else ''}/{filename} from the Hub or the local "
            f"cache: {type(error).__name__}",
            hint=OFFLINE_HINT,
        ) from None


def _commit_of(path: Path) -> str | None:
    origin = cached_file_origin(path)
    return origin.revision if origin else None


def _snapshot_root(path: Path, sub: str) -> Path:
    depth = len(Path(sub).parts) + 1  # the subfolder's parts, then the file name
    root = path
    for _ in range(depth):
        root = root.parent
    return root


# -- publishing -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StagedFile:
    """One file of a commit: a local file (hash-checked again right before the upload) or bytes."""

    path_in_repo: str
    content: Path | bytes
    sha256: str
    size: int


@dataclass(frozen=True)
class CommitPlan:
    """Everything one atomic `create_commit` will do, decided before anything remote happens."""

    repo: str
    files: tuple[StagedFile, ...]
    message: str
    description: str
    revision: str | None = None
    create_pr: bool = False

    def operations(self) -> list[str]:
        """One line per operation, as `--dry-run` prints them."""
        target = f"{self.repo}@{self.revision or 'main'}"
        how = "open a pull request against" if self.create_pr else "commit to"
        lines = [f"{how} {target} (parent: the head of {self.revision or 'main'} at push time)"]
        lines += [f"add {f.path_in_repo}  {f.size} bytes  sha256 {f.sha256}" for f in self.files]
        lines.append(f"message: {self.message}")
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "repo": self.repo,
            "revision": self.revision,
            "create_pr": self.create_pr,
            "message": self.message,
            "operations": [
                {"op": "add", "path_in_repo": f.path_in_repo, "size": f.size, "sha256": f.sha256}
                for f in self.files
            ],
        }


@dataclass(frozen=True)
class PushResult:
    """What the Hub answered."""

    repo: str
    commit: str
    commit_url: str
    pr_url: str | None
    parent_commit: str | None
    created_repo: bool

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def push_commit(plan: CommitPlan) -> PushResult:
    """Create the repo if needed, then one `create_commit` locked on the current head (`parent_commit`)."""
    from huggingface_hub import HfApi

    api = HfApi()  # the token comes from HF_TOKEN or the HF login; zoo never handles it
    with hub_errors(f"publishing to {plan.repo}"):
        parent, created = _parent_commit(api, plan)
        operations = _operations(plan)
        info = api.create_commit(
            plan.repo,
            operations,
            commit_message=plan.message,
            commit_description=plan.description,
            revision=plan.revision,
            create_pr=plan.create_pr,
            parent_commit=parent,
        )
    return PushResult(plan.repo, info.oid, info.commit_url, info.pr_url, parent, created)


def _parent_commit(api: Any, plan: CommitPlan) -> tuple[str | None, bool]:
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        return api.repo_info(plan.repo, revision=plan.revision).sha, False
    except RepositoryNotFoundError:
        api.create_repo(plan.repo, exist_ok=True)
        return None, True


def _operations(plan: CommitPlan) -> list[Any]:
    from huggingface_hub import CommitOperationAdd

    operations = []
    for staged in plan.files:
        if isinstance(staged.content, Path):
            # The bytes that leave must be the bytes the manifest proves: hash again, right before.
            verify_file(staged.content, staged.sha256, staged.size)
        operations.append(CommitOperationAdd(staged.path_in_repo, staged.content))
    return operations


@contextmanager
def hub_errors(doing: str) -> Iterator[None]:
    """Turn any failure of the hub client into a HubError whose message holds no token."""
    try:
        yield
    except ZooError:
        raise
    except Exception as error:
        raise HubError(
            f"{doing} failed: {type(error).__name__}: {scrub_secrets(str(error))[:500]}",
            hint="check `hf auth whoami` and your write access; nothing was committed",
        ) from None


def scrub_secrets(text: str) -> str:
    """Remove the HF token (whatever its shape) and anything that looks like one from a message."""
    secrets = {_token(), *(os.environ.get(name, "") for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"))}
    for secret in secrets:
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return re.sub(r"hf_[A-Za-z0-9]{8,}", "hf_***", text)


def _token() -> str:
    from huggingface_hub import get_token

    try:
        return get_token() or ""
    except Exception:  # a failing token source (OIDC exchange) must not hide the error being reported
        return ""


__all__ = [
    "COMMIT",
    "OFFLINE_HINT",
    "SHA256",
    "CommitPlan",
    "FileHash",
    "HashOrigin",
    "HubFile",
    "Pin",
    "PushResult",
    "StagedFile",
    "cached_blob_sha256",
    "cached_file_origin",
    "cached_path",
    "download_file",
    "download_optional_files",
    "download_pinned",
    "download_pipeline_parts",
    "hash_file",
    "hub_errors",
    "push_commit",
    "scrub_secrets",
    "sha256_file",
    "verify_file",
]

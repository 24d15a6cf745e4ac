"""What `zoo publish` puts on the Hub, decided before anything is sent.

The converted files (hash-checked against the manifest), the manifest entry rewritten for the repo's
layout, and a model card generated from that entry: base model and licence (inherited from the
sources, proven by a local file's hash, or declared by the publisher: `zoo.licensing`), a table of
files with sha256, the parity figures, and how to reproduce the files with `zoo convert`. Everything
lands in one commit plan (`zoo.hub.CommitPlan`).
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo import __version__
from zoo.errors import ConfigError, HashMismatchError, HubError
from zoo.hub import CommitPlan, StagedFile, hub_errors
from zoo.licensing import HUB_LICENSES, Licensing, UpstreamFile, resolve_licensing
from zoo.manifest import (
    MANIFEST_NAME,
    Manifest,
    check_files,
    dumps,
    new_manifest,
    read_manifest,
    recipe_revision,
    select,
    source_label,
    weights_output,
)

LIBRARY_NAME = "zoo"
CARD_NAME = "README.md"
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class Publication:
    """The entries and files of one publication, with paths as they will be in the repo."""

    entries: dict[str, dict[str, Any]]
    files: tuple[StagedFile, ...]
    manifest: StagedFile
    licensing: Licensing


def prepare_publication(
    name: str,
    repo: str,
    out: Path,
    *,
    revision: str | None = None,
    create_pr: bool = False,
    dry_run: bool = False,
    license: str | None = None,
    base_model: str | None = None,
    upstream: Mapping[str, UpstreamFile] | None = None,
) -> CommitPlan:
    """Stage NAME's files from OUT, generate and validate its card, and plan the one commit.

    `upstream` (declared pinned files by sha256) lets a local source prove its licence by its hash;
    `license` and `base_model` are the publisher's own declaration, for sources nothing proves.

    Refuses (raising) when a file's hash differs from the manifest, when the licence is unknown and not
    declared, or when the card does not validate (locally always; by the Hub too when online and not a
    dry run).
    """
    if not REPO_ID.match(repo):
        raise ConfigError(f"--repo must be ORG/NAME, got {repo!r}")
    if base_model is not None and not REPO_ID.match(base_model):
        raise ConfigError(f"--base-model must be ORG/NAME, got {base_model!r}")
    publication = stage_publication(out, name, upstream or {}, license, base_model)
    card = build_model_card(publication, repo)
    validate_model_card(card, publication, online=not dry_run and not _offline())
    readme = str(card).encode()
    names = ", ".join(publication.entries)
    return CommitPlan(
        repo=repo,
        files=(*publication.files, publication.manifest, _staged_bytes(CARD_NAME, readme)),
        message=f"Add {names} (converted by zoo {__version__})",
        description=f"Files, manifest entry and model card of {names}; every file's sha256 is in {MANIFEST_NAME}.",
        revision=revision,
        create_pr=create_pr,
    )


def stage_publication(
    out: Path,
    name: str,
    upstream: Mapping[str, UpstreamFile] | None = None,
    license: str | None = None,
    base_model: str | None = None,
) -> Publication:
    """NAME's entries from `OUT/manifest.json` and their outputs, each checked against its sha256.

    The entries' licensing is resolved first (`zoo.licensing.resolve_licensing`, which refuses an
    unknown licence); a licence proven by hash is written into the published copy of the entries.
    """
    manifest = read_manifest(out / MANIFEST_NAME)
    names = select(manifest, [name])
    licensing = resolve_licensing([manifest.entries[n] for n in names], upstream or {}, license, base_model)
    entries: dict[str, dict[str, Any]] = {}
    files: list[StagedFile] = []
    for entry_name in names:
        entry = _licensed(copy.deepcopy(manifest.entries[entry_name]), licensing)
        _check_outputs(manifest, entry_name, out)
        root = manifest.output_root(out)
        for output in entry["outputs"]:
            path_in_repo = _repo_path(output["file"], entry_name, single=len(names) == 1)
            files.append(StagedFile(path_in_repo, root / output["file"], output["sha256"], output["size"]))
            output["file"] = path_in_repo
        entries[entry_name] = entry
    data = new_manifest("output")
    data["conversions"] = entries
    return Publication(entries, tuple(files), _staged_bytes(MANIFEST_NAME, dumps(data).encode()), licensing)


def _licensed(entry: dict[str, Any], licensing: Licensing) -> dict[str, Any]:
    """The entry as published: a licence its sources' hashes prove is recorded; a declared one is not.

    A declared licence stays `null` in the manifest (zoo does not know it), its reason saying who
    declared what; the model card carries the declaration.
    """
    if licensing.how == "declared":
        entry["unknown"]["license"] = (
            f"not proven by the sources: the publisher declared {licensing.license} "
            f"(zoo publish --license); {entry['unknown'].get('license', '')}"
        ).rstrip("; ")
        return entry
    matched = {path for path, _ in licensing.matches}
    for source in entry["sources"]:
        if source["license"] is None and (source.get("path") or source.get("file")) in matched:
            source["license"] = licensing.license
            source["unknown"].pop("license", None)
    # The weights carry the licence; their configs and tokenizer files come with them.
    entry["license"] = licensing.license
    entry["unknown"].pop("license", None)
    return entry


def _check_outputs(manifest: Manifest, name: str, out: Path) -> None:
    for check in check_files(manifest, name, out, sources=False, extras=False):
        if check.status == "mismatch":
            raise HashMismatchError(f"refusing to publish: {check.detail}", file=check.path)
        if check.status == "missing":
            raise ConfigError(
                "refusing to publish: the file is not here", file=check.path, hint=f"run `zoo convert {name}`"
            )
        if check.status == "unknown":
            raise HubError(
                f"refusing to publish a file without a recorded sha256: {check.detail}", file=check.path
            )


def _repo_path(file: str, name: str, single: bool) -> str:
    """One component goes to the repo's top level (`zoo.load(snapshot)` works); several keep folders."""
    prefix = f"{name}/"
    return file.removeprefix(prefix) if single else file


def _staged_bytes(path_in_repo: str, content: bytes) -> StagedFile:
    return StagedFile(path_in_repo, content, hashlib.sha256(content).hexdigest(), len(content))


def _offline() -> bool:
    from huggingface_hub import constants

    return constants.is_offline_mode()


# -- the card ---------------------------------------------------------------------------------------


def build_model_card(publication: Publication, repo: str) -> Any:
    """A `huggingface_hub.ModelCard` for the publication."""
    from huggingface_hub import ModelCard, ModelCardData

    entries = list(publication.entries.values())
    # Hub sources, and local files an entry identified as a declared Hub file (they carry its repo).
    bases = list(publication.licensing.base_models)
    families = sorted({re.split(r"[./]", e["name"], maxsplit=1)[0] for e in entries})
    data = ModelCardData(
        base_model=bases[0] if len(bases) == 1 else bases,
        license=publication.licensing.license,
        library_name=LIBRARY_NAME,
        tags=["zoo", "safetensors", *families, *(e["name"] for e in entries)],
        license_name=_license_detail(entries[0], "license_name"),
        license_link=_license_detail(entries[0], "license_link"),
    )
    body = "\n".join(_body(publication, repo, bases))
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")


def _license_detail(entry: Mapping[str, Any], key: str) -> str | None:
    """The name or link of an `other` licence, for entries that record them."""
    return entry.get(key) if entry["license"] == "other" else None


def _body(publication: Publication, repo: str, bases: list[str]) -> list[str]:
    entries = list(publication.entries.values())
    origin = "made from" if publication.licensing.declared_base else "converted from"
    lines = [f"# {repo}", ""]
    for entry in entries:
        # LoRA entries have no target model: they change the base's models.
        target = entry.get("target", {}).get("model_class")
        lines.append(
            f"`{entry['name']}`: {entry['description']}, {origin} "
            f"{', '.join(f'[{b}](https://huggingface.co/{b})' for b in bases)} by zoo {entry['zoo_version']}"
            + (f" for `{target}`." if target else ".")
        )
    lines += ["", "## Files", "", "| file | bytes | sha256 |", "|---|---|---|"]
    lines += [
        f"| `{f.path_in_repo}` | {f.size:,} | `{f.sha256}` |"
        for f in (*publication.files, publication.manifest)
    ]
    for entry in entries:
        lines += [
            "",
            f"## `{entry['name']}`",
            "",
            *_sources(entry),
            "",
            *_parity(entry),
            "",
            *_reproduce(entry),
        ]
    lines += ["", *_use(repo, list(publication.entries))]
    return [*lines, "", "## Licence", "", *_licence(publication.licensing), ""]


def _licence(licensing: Licensing) -> list[str]:
    """How the licence (and base model) is known: inherited, proven by a hash, or the publisher's word."""
    if licensing.how == "inherited":
        return [f"The weights keep the licence of their source: `{licensing.license}`."]
    if licensing.how == "hash-matched":
        lines = [
            f"The weights keep the licence of their source: `{licensing.license}`. Converted from local files,"
        ]
        lines += [
            "each the declared upstream file its sha256 equals, whose licence and repository it carries:",
            "",
        ]
        lines += [
            f"- `{path}` is `{m.repo}/{m.filename}`" + (f" at `{m.revision}`" if m.revision else "")
            for path, m in licensing.matches
        ]
        return lines
    lines = [
        f"Licence `{licensing.license}` was declared by the publisher (`zoo publish --license`): zoo did not",
        "derive it from the sources, whose licence it does not know.",
    ]
    if licensing.declared_base:
        lines += [
            "",
            f"The base model `{licensing.base_models[0]}` was declared by the publisher too (`--base-model`).",
        ]
    return lines


def _sources(entry: Mapping[str, Any]) -> list[str]:
    lines = ["Sources:", "", "| source | bytes | sha256 |", "|---|---|---|"]
    lines += [f"| `{source_label(s)}` | {s['size']:,} | `{s['sha256']}` |" for s in entry["sources"]]
    return lines


def _parity(entry: Mapping[str, Any]) -> list[str]:
    parity = entry["parity"]
    if parity is None:
        return [f"Parity: not measured ({entry['unknown']['parity']})."]
    versions = ", ".join(f"{name} {version}" for name, version in sorted(parity["versions"].items()))
    lines = [
        f"Parity against the upstream model, same seeded inputs, on {parity['device']} in {parity['dtype']} "
        f"({versions}):",
        "",
        "| output | max relative error | max absolute error |",
        "|---|---|---|",
    ]
    pairs = zip(parity["relative_errors"], parity["max_abs_errors"], strict=True)
    lines += [f"| {index} | {rel:.3g} | {abs_:.3g} |" for index, (rel, abs_) in enumerate(pairs)]
    return lines


def _reproduce(entry: Mapping[str, Any]) -> list[str]:
    recipe, revision = entry["convert"], recipe_revision(entry)
    command = recipe.get("command") or f"zoo convert {entry['name']} --source {recipe['source']}"
    command += f" --revision {revision}" if revision else ""
    command += f" --dtype {recipe['dtype']}" if recipe["dtype"] != "keep" else ""
    weights = weights_output(entry)
    return [
        f"Reproduce (zoo {entry['zoo_version']}): the weights must come out with sha256 `{weights['sha256']}`.",
        "",
        "```bash",
        f"{command} --out out",
        "zoo verify out --hashes --reproduce --parity",
        "```",
    ]


def _use(repo: str, names: list[str]) -> list[str]:
    folder = "folder" if len(names) == 1 else f'folder + "/{names[0]}"'
    return [
        "## Use",
        "",
        "```python",
        "from huggingface_hub import snapshot_download",
        "import zoo",
        "",
        f'folder = snapshot_download("{repo}")',
        f"model = zoo.load({folder})",
        "```",
        "",
        "`zoo verify FOLDER --hashes` checks the downloaded files against `manifest.json`.",
    ]


def validate_model_card(card: Any, publication: Publication, *, online: bool) -> None:
    """Refuse a card whose metadata is incomplete or wrong; online, the Hub's validator must agree too."""
    from huggingface_hub import ModelCard

    metadata = ModelCard(str(card)).data.to_dict()  # what the Hub will parse back
    problems = [
        f"no {key}" for key in ("license", "base_model", "library_name", "tags") if not metadata.get(key)
    ]
    license = metadata.get("license")
    if license and license not in HUB_LICENSES:
        problems.append(f"licence {license!r} is not a Hub licence id")
    if license == "other" and not (metadata.get("license_name") and metadata.get("license_link")):
        problems.append("licence 'other' needs license_name and license_link")
    bases = metadata.get("base_model") or []
    for base in [bases] if isinstance(bases, str) else bases:
        if not REPO_ID.match(base):
            problems.append(f"base_model {base!r} is not ORG/NAME")
    problems += [
        f"{f.path_in_repo} is not listed with its sha256"
        for f in publication.files
        if f.sha256 not in card.text
    ]
    if problems:
        raise HubError(f"refusing to publish: the model card does not validate: {'; '.join(problems)}")
    if online:
        with hub_errors("the Hub's model card validation (nothing was published)"):
            card.validate()

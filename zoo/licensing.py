"""The licence and base model a publication carries, and how each is known.

Three ways, tried in this order:

- inherited: every source is a Hub file whose licence the declaration records (`zoo convert` from the
  declared repository);
- proven by hash: a local weights file whose sha256 equals a declared pinned upstream file is that file
  (a local copy of SDXL), so it carries that file's licence and repository, as if read from the Hub;
- declared by the publisher: `--license` (and `--base-model` when no source names one), said as such on
  the model card, for what zoo cannot know (one's own fine-tune).

Otherwise publishing is refused, and the message names both ways out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from zoo.errors import ConfigError, HubError

# Licence ids the Hub accepts in card metadata: the SPDX-style ids (lowercase) and the model licences it
# knows by name. Anything else must be `other` with `license_name` and `license_link`, and the Hub's own
# validator has the last word when online.
HUB_LICENSES = frozenset(
    """
    apache-2.0 mit openrail openrail++ creativeml-openrail-m bigscience-openrail-m bigscience-bloom-rail-1.0
    bigcode-openrail-m afl-3.0 artistic-2.0 bsl-1.0 bsd bsd-2-clause bsd-3-clause bsd-3-clause-clear
    c-uda cc cc0-1.0 cc-by-2.0 cc-by-2.5 cc-by-3.0 cc-by-4.0 cc-by-sa-3.0 cc-by-sa-4.0 cc-by-nc-2.0
    cc-by-nc-3.0 cc-by-nc-4.0 cc-by-nd-4.0 cc-by-nc-nd-3.0 cc-by-nc-nd-4.0 cc-by-nc-sa-2.0 cc-by-nc-sa-3.0
    cc-by-nc-sa-4.0 cdla-sharing-1.0 cdla-permissive-1.0 cdla-permissive-2.0 wtfpl ecl-2.0 epl-1.0
    epl-2.0 eupl-1.1 agpl-3.0 gfdl gpl gpl-2.0 gpl-3.0 lgpl lgpl-2.1 lgpl-3.0 isc ms-pl mpl-2.0 odc-by
    odbl osl-3.0 postgresql ofl-1.1 ncsa unlicense zlib pddl llama2 llama3 llama3.1 llama3.2 gemma
    deepfloyd-if-license other
    """.split()
)
How = Literal["inherited", "hash-matched", "declared"]
WAYS_OUT = (
    "convert from the declared Hub repository, or from a local file whose sha256 equals a declared "
    "pinned upstream file (its licence and base model are then inherited); or declare them: "
    "zoo publish ... --license ID --base-model ORG/NAME"
)


@dataclass(frozen=True)
class UpstreamFile:
    """A declared, pinned upstream file, which a local file equals when their sha256 are equal."""

    repo: str
    filename: str
    revision: str | None
    license: str


@dataclass(frozen=True)
class Licensing:
    """What a publication says about its licence and base models.

    Attributes:
        license: The licence id.
        base_models: The Hub repositories the weights come from.
        how: `inherited`, `hash-matched` or `declared` (by the publisher).
        matches: (local source path, the pinned upstream file its sha256 equals), for `hash-matched`.
        declared_base: The base model came from `--base-model`.
    """

    license: str
    base_models: tuple[str, ...]
    how: How
    matches: tuple[tuple[str, UpstreamFile], ...] = ()
    declared_base: bool = False


def resolve_licensing(
    entries: Sequence[Mapping[str, Any]],
    upstream: Mapping[str, UpstreamFile],
    license: str | None = None,
    base_model: str | None = None,
) -> Licensing:
    """The licensing of a publication of `entries` (output manifest entries).

    Args:
        entries: The entries published together.
        upstream: Declared pinned upstream files by sha256.
        license: `--license`, if given: a Hub licence id (any case).
        base_model: `--base-model`, if given.

    Raises:
        ConfigError: `--license` is not a licence id the Hub knows, or contradicts what the sources prove.
        HubError: The licence is unknown and was not declared, or a declared one lacks a base model.
    """
    declared = normalized_license(license) if license is not None else None
    proven = _proven(entries, upstream)
    if proven is not None:
        if declared is not None and declared != proven.license:
            raise ConfigError(
                f"--license {declared} contradicts the sources' licence {proven.license}, which "
                f"{'their hashes prove' if proven.how == 'hash-matched' else 'the declaration records'}",
                hint="leave --license out: the licence is inherited",
            )
        return proven
    if declared is None:
        names = ", ".join(entry["name"] for entry in entries)
        raise HubError(
            f"refusing to publish {names}: its licence is unknown ({_reason(entries)})", hint=WAYS_OUT
        )
    return _declared(entries, upstream, declared, base_model)


def normalized_license(license: str) -> str:
    """A licence id as the Hub writes it (`Apache-2.0` -> `apache-2.0`); an unknown one is an error."""
    normalized = license.strip().lower()
    if normalized not in HUB_LICENSES:
        raise ConfigError(
            f"--license {license!r} is not a licence id the Hub knows",
            hint="an SPDX id such as apache-2.0, mit, cc-by-nc-4.0, or a model licence such as openrail++",
        )
    return normalized


def _proven(entries: Sequence[Mapping[str, Any]], upstream: Mapping[str, UpstreamFile]) -> Licensing | None:
    """The licensing the sources prove (Hub licences, hash-matched local weights); None if they do not."""
    if all(entry["license"] is not None for entry in entries):
        licenses = {entry["license"] for entry in entries}
        if len(licenses) != 1:
            return None
        return Licensing(licenses.pop(), _hub_repos(entries), "inherited")
    matches = _matches(entries, upstream)
    if matches is None:
        return None
    licenses = {entry["license"] for entry in entries if entry["license"]} | {m.license for _, m in matches}
    for entry in entries:
        licenses |= {s["license"] for s in entry["sources"] if s["kind"] == "hub" and s["license"]}
    if len(licenses) != 1:
        return None
    repos = sorted({*_hub_repos(entries), *(m.repo for _, m in matches)})
    return Licensing(licenses.pop(), tuple(repos), "hash-matched", tuple(matches))


def _matches(
    entries: Sequence[Mapping[str, Any]], upstream: Mapping[str, UpstreamFile]
) -> list[tuple[str, UpstreamFile]] | None:
    """Each local weights source without a licence, with the pinned file it equals; None if one equals none."""
    matches: list[tuple[str, UpstreamFile]] = []
    for entry in entries:
        for source in entry["sources"]:
            if source["license"] is not None or source.get("role") != "weights":
                continue
            match = upstream.get(source.get("sha256") or "")
            if match is None:
                return None
            matches.append((source.get("path") or source.get("file") or "", match))
    return matches


def _declared(
    entries: Sequence[Mapping[str, Any]],
    upstream: Mapping[str, UpstreamFile],
    license: str,
    base_model: str | None,
) -> Licensing:
    known = sorted({*_hub_repos(entries), *(m.repo for _, m in (_matches(entries, upstream) or []))})
    if base_model is not None:
        return Licensing(license, (base_model,), "declared", declared_base=True)
    if not known:
        raise HubError(
            "refusing to publish with a declared licence but no base model: the sources name none",
            hint="pass --base-model ORG/NAME (the model the weights were made from) with --license",
        )
    return Licensing(license, tuple(known), "declared")


def _hub_repos(entries: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    # Hub sources, and local files an entry identified as a declared Hub file (they carry its repo).
    return tuple(
        sorted({s["repo"] for e in entries for s in e["sources"] if s["kind"] == "hub" or s.get("repo")})
    )


def _reason(entries: Sequence[Mapping[str, Any]]) -> str:
    for entry in entries:
        if entry["license"] is None:
            return entry["unknown"].get("license", "no licence recorded")
    return "the entries carry different licences"


__all__ = [
    "HUB_LICENSES",
    "WAYS_OUT",
    "Licensing",
    "UpstreamFile",
    "normalized_license",
    "resolve_licensing",
]

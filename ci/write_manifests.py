"""Regenerate `manifests/<family>.json`, the declared zoo, from the conversion declarations.

Usage (from the repository root):
    .venv/bin/python ci/write_manifests.py                  # rewrite manifests/*.json
    .venv/bin/python ci/write_manifests.py --check          # schema check; fail if a file is stale
    .venv/bin/python ci/write_manifests.py --merge OUT/manifest.json
                                                            # adopt what a real run recorded

Everything comes from the declarations (pinned repo, file, revision, sha256, licence; our model's
config, traced on meta) except facts only a real run can give: output hashes and sizes, parity, and
unpinned source revisions/hashes. Those stay `null` with a reason until `--merge` adopts them from an
output manifest whose Hub sources match the declared pins; regenerating keeps them as long as the
declaration still agrees with them.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from converters import registry
from converters._convert.component import trace_conversion
from converters.declaration import Conversion, UpstreamPart
from converters.family import Family
from zoo import __version__
from zoo.configs import config_to_dict, qualified_name
from zoo.formats import CONFIG_NAME, WEIGHTS_NAME
from zoo.manifest import (
    PARITY_NOT_MEASURED,
    config_sha256,
    dumps,
    new_manifest,
    read_manifest,
    validate_manifest,
)

ROOT = Path(__file__).resolve().parent.parent
FOLDER = ROOT / "manifests"
NOT_RUN = "no machine with Hub access has converted the pinned files yet: run `zoo convert {name}` there, then `ci/write_manifests.py --merge OUT/manifest.json`"
NOT_PINNED = "the declaration pins the weights file only"
DTYPE_UNKNOWN = "the output keeps the source file's dtype, which is recorded by the first real conversion"


def declared_entry(conversion: Conversion) -> dict[str, Any]:
    """A conversion's manifest entry as the declaration alone knows it."""
    traced = trace_conversion(conversion, conversion.synthetic_configs("full"))
    config = config_to_dict(traced.config)
    shapes = traced.keymap.target_shapes
    not_run = NOT_RUN.format(name=conversion.name)
    weights = {
        "file": f"{conversion.name}/{WEIGHTS_NAME}",
        "role": "weights",
        "sha256": None,
        "size": None,
        "dtype": None,
        "num_tensors": len(shapes),
        "num_params": sum(math.prod(shape) for shape in shapes.values()),
        "unknown": {"sha256": not_run, "size": not_run, "dtype": DTYPE_UNKNOWN},
    }
    config_output = {
        "file": f"{conversion.name}/{CONFIG_NAME}",
        "role": "config",
        "sha256": None,
        "size": None,
        "unknown": {"sha256": not_run, "size": not_run},
    }
    return {
        "name": conversion.name,
        "description": conversion.description,
        "license": conversion.license,
        "target": {
            "model_class": traced.model_class,
            "config_class": qualified_name(type(traced.config)),
            "config": config,
            "config_sha256": config_sha256(config),
        },
        "keymap_sha256": traced.keymap.digest(),
        "sources": [record for part in conversion.parts for record in _part_sources(conversion, part)],
        "outputs": [weights, config_output],
        "convert": {"source_kind": "hub", "source": conversion.hub_repo, "dtype": "keep"},
        "parity": None,
        "zoo_version": __version__,
        "unknown": {"parity": PARITY_NOT_MEASURED.format(name=conversion.name) + " on the real weights"},
    }


def _part_sources(conversion: Conversion, part: UpstreamPart) -> list[dict[str, Any]]:
    pin = part.pinned
    folder = part.subfolder if part.repo_folder is None else part.repo_folder
    prefix = f"{folder}/" if folder else ""
    repo = pin.repo if pin else conversion.hub_repo
    why = (pin.unknown if pin else None) or "not pinned in the declaration"
    license = (pin.license if pin else None) or conversion.license
    weights = {
        "kind": "hub",
        "role": "weights",
        "repo": repo,
        "file": pin.filename if pin else None,
        "revision": pin.revision if pin else None,
        "sha256": pin.sha256 if pin else None,
        "size": pin.size if pin else None,
        "license": license,
    }
    config = {**weights, "role": "config", "file": f"{prefix}{CONFIG_NAME}", "sha256": None, "size": None}
    reasons = {"sha256": NOT_PINNED, "size": NOT_PINNED}
    records = [{**weights, "unknown": {key: why for key, value in weights.items() if value is None}}]
    if part.hub_single_file:  # one original file, no config.json beside it
        return records
    return [
        *records,
        {**config, "unknown": {key: reasons.get(key, why) for key, value in config.items() if value is None}},
    ]


# -- adopting recorded facts ------------------------------------------------------------------------


class Incompatible(Exception):
    """A recorded entry does not describe the declared conversion (so its facts cannot be adopted)."""


def adopt(declared: dict[str, Any], recorded: Mapping[str, Any]) -> dict[str, Any]:
    """The declared entry with the nulls a real run recorded filled in; raises Incompatible."""
    _require(recorded["convert"]["source_kind"] == "hub", "its sources are local files, not the Hub's")
    _require(recorded["convert"]["dtype"] == "keep", f"it was converted to {recorded['convert']['dtype']}")
    for key in ("keymap_sha256",):
        _require(declared[key] == recorded[key], f"{key} differs")
    _require(
        declared["target"]["config_sha256"] == recorded["target"]["config_sha256"], "target config differs"
    )
    merged = {**declared, "sources": [_fill(s, _match_source(s, recorded)) for s in declared["sources"]]}
    by_role = {output["role"]: output for output in recorded["outputs"]}
    merged["outputs"] = [_fill(o, by_role.get(o["role"]), ignore=("file",)) for o in declared["outputs"]]
    parity = recorded.get("parity")
    weights = by_role.get("weights") or {}
    if parity and parity["output_sha256"] == weights.get("sha256"):
        merged["parity"], merged["unknown"] = (
            parity,
            {k: v for k, v in declared["unknown"].items() if k != "parity"},
        )
    return merged


def _match_source(declared: Mapping[str, Any], recorded: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for source in recorded["sources"]:
        if source["kind"] == "hub" and (source["repo"], source["file"]) == (
            declared["repo"],
            declared["file"],
        ):
            return source
    return None


def _fill(
    declared: dict[str, Any], recorded: Mapping[str, Any] | None, ignore: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Nulls of `declared` from `recorded`; a known declared value that differs is Incompatible."""
    if recorded is None:
        _require(declared.get("file") is None, f"it has no {declared.get('file')}")
        return declared
    filled = dict(declared)
    for key, value in declared.items():
        if key in ("unknown", "license", *ignore):
            continue
        if value is None:
            filled[key] = recorded.get(key)
        else:
            _require(
                recorded.get(key) == value,
                f"{declared['file']}: {key} {recorded.get(key)!r} is not {value!r}",
            )
    filled["unknown"] = {key: why for key, why in declared["unknown"].items() if filled.get(key) is None}
    return filled


def _require(condition: bool, reason: str) -> None:
    if not condition:
        raise Incompatible(reason)


# -- the files --------------------------------------------------------------------------------------


def family_manifest(family: Family, recorded: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """A family's declared manifest, keeping (or adopting) recorded facts that still agree."""
    data = new_manifest("declared")
    for conversion in family.declared:
        entry = declared_entry(conversion)
        previous = recorded.get(conversion.name)
        if previous is not None:
            try:
                entry = adopt(entry, previous)
            except Incompatible as reason:
                print(f"{conversion.name}: recorded facts not kept: {reason}", file=sys.stderr)
        data["conversions"][conversion.name] = entry
    return data


def _existing(path: Path) -> dict[str, Any]:
    return read_manifest(path).entries if path.exists() else {}


def declaring_families() -> list[Family]:
    """The families with conversions to declare (adapter families like `lora` have none)."""
    return [family for family in registry.families().values() if family.declared]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="validate and compare; write nothing")
    parser.add_argument("--merge", type=Path, help="an output manifest whose recorded facts to adopt")
    parser.add_argument("--folder", type=Path, default=FOLDER, help="where the manifests live")
    args = parser.parse_args(argv)
    merged = read_manifest(args.merge).entries if args.merge else {}
    stale = _check_files(args.folder) if args.check else []
    if stale:
        print("\n".join(stale), file=sys.stderr)
        return 1
    torch.set_grad_enabled(False)
    for family in declaring_families():
        path = args.folder / f"{family.name}.json"
        recorded = {**_existing(path), **merged}
        text = dumps(family_manifest(family, recorded))
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(f"{path}: out of date with the declarations (run ci/write_manifests.py)")
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    for problem in stale:
        print(problem, file=sys.stderr)
    return 1 if stale else 0


def _check_files(folder: Path) -> list[str]:
    """Schema problems of every manifest file, and files that no declared family owns."""
    import json

    problems: list[str] = []
    for path in sorted(folder.glob("*.json")):
        if path.stem not in {family.name for family in declaring_families()}:
            problems.append(f"{path}: no declared family {path.stem!r}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as error:
            problems.append(f"{path}: not JSON: {error}")
            continue
        problems += [f"{path}: {problem}" for problem in validate_manifest(data)]
        if isinstance(data, dict) and data.get("kind") != "declared":
            problems.append(f"{path}: kind must be 'declared'")
    return problems


if __name__ == "__main__":
    sys.exit(main())

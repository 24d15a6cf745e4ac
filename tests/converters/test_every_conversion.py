"""Every declared conversion, variants included, asked of the registry: nothing here names a family.

A family gets all of this by registering itself: a complete declaration, tiny fp32 parity against
its reference, the same bytes from its original single file (when it has one), full-size key-map
coverage on meta, two-run determinism, a manifest entry that follows the schema, a self-describing
output that `zoo inspect` recognizes, and `zoo convert --dry-run --json`.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import zoo
from converters import registry
from converters._convert import keymap_cache
from converters._convert.by_name import ConvertRun, convert
from converters._convert.component import ComponentResult, trace_conversion
from converters._convert.sources import resolve_source
from converters._reports.file_report import inspect_file
from converters._verify.parity import measure_parity
from converters.declaration import Conversion, upstream_model
from zoo.cli import main
from zoo.manifest import read_manifest

CONVERSIONS = sorted(registry.all_conversions())
SINGLE_FILE = [name for name in CONVERSIONS if registry.all_conversions()[name].single_file is not None]
FIRST_OF_EACH_FAMILY = [family.declared[0].name for family in registry.families().values() if family.declared]
TinyConversions = Callable[..., ConvertRun]  # the `tiny_converted` fixture (tests/conftest.py)
PARITY_LIMIT = 1e-5  # float32, relative to the reference's largest value


def _conversion(name: str) -> Conversion:
    return registry.all_conversions()[name]


def _result(run: ConvertRun, name: str) -> ComponentResult:
    return next(result for result in run.results if result.name == name)


def test_the_registry_has_families_with_conversions() -> None:
    assert CONVERSIONS, "no conversion is declared: the family folders did not register"


@pytest.mark.parametrize("name", CONVERSIONS)
def test_declaration_is_complete(name: str) -> None:
    """Tiny and full configs for every part, example inputs that run on meta, a reference and ours."""
    conversion = _conversion(name)
    family = registry.family_of(conversion)
    assert conversion in family.declared and conversion.description and conversion.license
    for size in ("tiny", "full"):
        configs = conversion.synthetic_configs(size)
        assert {part.subfolder for part in conversion.parts} <= set(configs), f"{name}: {size} configs"
    config = conversion.derive_config(conversion.synthetic_configs("tiny"))
    assert conversion.family_check(config) is None, f"{name}: its own tiny config is not of its family"
    with torch.device("meta"):
        reference = upstream_model(conversion, conversion.synthetic_configs("tiny"))
        ours = conversion.build_target(config)
        inputs = conversion.example_inputs(config, "meta", None)
        conversion.run_upstream(reference, inputs)
        conversion.run_target(ours, inputs)


@pytest.mark.parametrize("name", CONVERSIONS)
def test_tiny_parity_with_the_reference(tiny_converted: TinyConversions, name: str) -> None:
    run = tiny_converted(name)
    conversion = _conversion(name)
    assert run.synthetic_source is not None
    parity = measure_parity(
        conversion, resolve_source(conversion, run.synthetic_source), run.results[0].folder
    )
    print(f"{name}: relative errors {parity.relative_errors}")
    assert parity.max_relative_error <= PARITY_LIMIT


@pytest.mark.parametrize("name", SINGLE_FILE)
def test_the_original_single_file_gives_parity_and_the_same_bytes(
    tiny_converted: TinyConversions, name: str
) -> None:
    family = registry.family_of(_conversion(name))
    # A family's original file holds the whole family, or one conversion's model (one file per size).
    asked = name if family.single_file and family.single_file.per_conversion else family.name
    run = tiny_converted(asked, "single-file")
    assert run.synthetic_source is not None and run.synthetic_source.is_file()
    result = _result(run, name)
    parity = measure_parity(
        _conversion(name), resolve_source(_conversion(name), run.synthetic_source), result.folder
    )
    assert parity.max_relative_error <= PARITY_LIMIT
    assert result.sha256 == _result(tiny_converted(asked), name).sha256


@pytest.mark.parametrize("name", CONVERSIONS)
def test_full_size_key_map_covers_everything_on_meta(
    name: str, traced_key_maps: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conversion = _conversion(name)
    configs = conversion.synthetic_configs("full")
    traced = trace_conversion(conversion, configs, use_cache=False)
    monkeypatch.setenv("ZOO_CACHE", str(traced_key_maps))
    monkeypatch.delenv("ZOO_NO_CACHE")
    keymap_cache.store(conversion.name, configs, traced.keymap, traced.model_class)  # for later tests
    coverage = traced.keymap.coverage
    assert coverage is not None, name
    assert coverage.produced_targets + len(coverage.ignored_target) == coverage.target_tensors, (
        coverage.summary()
    )
    assert coverage.mapped_sources + len(coverage.ignored_source) == coverage.source_tensors, (
        coverage.summary()
    )
    with torch.device("meta"):
        reference = upstream_model(conversion, conversion.synthetic_configs("full"))
    values = sum(math.prod(shape) for shape in traced.keymap.target_shapes.values())
    assert values == sum(tensor.numel() for tensor in reference.state_dict().values())


@pytest.mark.parametrize("name", CONVERSIONS)
def test_two_runs_write_the_same_bytes(tiny_converted: TinyConversions, name: str, tmp_path: Path) -> None:
    first = tiny_converted(name)
    convert(name, out=tmp_path, source=str(first.synthetic_source))
    for file in ("model.safetensors", "config.json"):
        assert (tmp_path / name / file).read_bytes() == (first.results[0].folder / file).read_bytes(), file


def test_a_separate_process_writes_the_same_bytes(tiny_converted: TinyConversions, tmp_path: Path) -> None:
    """One conversion of each family again in one fresh process (hash seeds, import order, threads)."""
    sources = {name: str(tiny_converted(name).synthetic_source) for name in FIRST_OF_EACH_FAMILY}
    script = (
        "import json, sys\nfrom pathlib import Path\nfrom converters._convert.by_name import convert\n"
        "for name, source in json.loads(sys.argv[1]).items():\n"
        "    convert(name, out=Path(sys.argv[2]), source=source)\n"
    )
    subprocess.run(
        [sys.executable, "-c", script, json.dumps(sources), str(tmp_path)], check=True, capture_output=True
    )
    for name in FIRST_OF_EACH_FAMILY:
        fresh = (tmp_path / name / "model.safetensors").read_bytes()
        assert fresh == (tiny_converted(name).results[0].folder / "model.safetensors").read_bytes(), name


@pytest.mark.parametrize("name", CONVERSIONS)
def test_the_manifest_entry_follows_the_schema(tiny_converted: TinyConversions, name: str) -> None:
    run = tiny_converted(name)
    manifest = read_manifest(run.results[0].folder.parent / "manifest.json")  # validates the schema
    weights = next(o for o in manifest.entries[name]["outputs"] if o["role"] == "weights")
    assert weights["sha256"] == run.results[0].sha256 and weights["num_params"] == run.results[0].params


@pytest.mark.parametrize("name", CONVERSIONS)
def test_the_output_loads_alone_and_says_what_it_is(tiny_converted: TinyConversions, name: str) -> None:
    result = tiny_converted(name).results[0]
    model = zoo.load(str(result.folder))
    assert type(model).__module__.startswith("zoo.foundationals.")
    assert sum(p.numel() for p in model.parameters()) == result.params  # pyright: ignore[reportAttributeAccessIssue]
    report = inspect_file(result.folder)
    assert report.family == _conversion(name).family and report.kind is not None and name in report.kind


@pytest.mark.parametrize("name", CONVERSIONS)
def test_cli_dry_run_json_writes_nothing(tiny_converted: TinyConversions, name: str, tmp_path: Path) -> None:
    source = str(tiny_converted(name).synthetic_source)
    args = ["convert", name, "--source", source, "--out", str(tmp_path / "out"), "--dry-run", "--json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.stderr
    planned = json.loads(result.stdout)["components"]
    assert [c["name"] for c in planned] == [name] and planned[0]["dry_run"] and planned[0]["sha256"] is None
    assert not (tmp_path / "out").exists()

"""The single-file map cache: a header mapped before is not recorded again, gives the same recipes and
the same bytes, any change of header or code misses, and a bad entry is ignored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from converters import registry
from converters._checkpoints import open_checkpoint
from converters._convert.by_name import convert
from converters._single_file import map_cache, replay
from converters._single_file.recording import Call, Leaf

NAME = "sdxl.autoencoder"  # its attention weights are 1×1 convolutions upstream: recipes with operations


@pytest.fixture(scope="module")
def single_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("single-file")
    run = convert(NAME, out=out, synthetic="tiny", synthetic_layout="single-file")
    return Path(run.synthetic_source)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("ZOO_NO_CACHE", raising=False)
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / map_cache.KIND


def _map(file: Path) -> replay.SingleFileMap:
    with open_checkpoint(file) as reader:
        shapes, dtypes = replay._header(reader)  # pyright: ignore[reportPrivateUsage]
    return replay._mapped(registry.all_conversions()[NAME], shapes, dtypes, file)  # pyright: ignore[reportPrivateUsage]


def _refuse_recording(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object) -> None:
        raise AssertionError("recorded again: the cache missed")

    monkeypatch.setattr(replay, "map_single_file", refuse)


def test_a_mapped_header_comes_from_the_cache_with_the_same_recipes(
    single_file: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _map(single_file)
    assert len(list(cache.iterdir())) == 1
    _refuse_recording(monkeypatch)
    second = _map(single_file)
    assert second.configs == first.configs and second.ignored == first.ignored
    assert second.recipes == first.recipes  # the operations are the same torch functions, by identity
    assert any(isinstance(plan.recipe, Call) for plan in first.recipes.values())


def test_a_cached_map_converts_to_the_same_bytes(
    single_file: Path, cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = convert(NAME, out=tmp_path / "a", source=str(single_file))
    _refuse_recording(monkeypatch)
    second = convert(NAME, out=tmp_path / "b", source=str(single_file))
    assert second.results[0].sha256 == first.results[0].sha256


def test_another_code_version_misses_and_a_bad_entry_is_ignored(
    single_file: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _map(single_file)
    (entry,) = cache.iterdir()
    entry.write_text(json.dumps({"recipes": {"x": {"call": ["os", "system"], "args": [], "kwargs": {}}}}))
    assert map_cache.load(entry.stem) is None  # only torch's functions are looked up
    _map(single_file)  # learned again, and stored over the bad entry
    assert map_cache.load(entry.stem) is not None
    monkeypatch.setattr(map_cache, "code_digest", lambda: "another version of the code")
    recorded: list[Path] = []
    learn = replay.map_single_file
    monkeypatch.setattr(replay, "map_single_file", lambda *a: recorded.append(a[-1]) or learn(*a))  # pyright: ignore[reportUnknownLambdaType, reportUnknownArgumentType]
    _map(single_file)
    assert recorded == [single_file]


def test_values_keep_their_types_through_json() -> None:
    value = {
        "recipe": Call(torch.Tensor.__getitem__, (Leaf("a"), (slice(0, 4, None), Ellipsis)), {}, None),
        "split": Call(torch.split, (Leaf("b"), 2), {"dim": 0}, 1),
        "shape": (3, 4),
        "size": torch.Size([2]),
        "dtype": torch.bfloat16,
        "list": [1, 2.5, None, True, "x"],
    }
    assert map_cache.decode(json.loads(json.dumps(map_cache.encode(value)))) == value


def test_an_operation_outside_torch_is_not_cached() -> None:
    with pytest.raises(map_cache.Unencodable):
        map_cache.encode(Call(print, (Leaf("a"),), {}, None))

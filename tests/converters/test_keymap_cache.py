"""The on-disk key map cache: hits give the same map, any change of input misses, bad entries are ignored."""

from __future__ import annotations

from pathlib import Path

import pytest

from converters import registry
from converters._convert import keymap_cache
from converters._convert.by_name import convert
from converters._convert.component import trace_conversion


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("ZOO_NO_CACHE", raising=False)
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "keymaps"


def test_second_trace_comes_from_the_cache_and_is_the_same_map(cache: Path) -> None:
    conversion = registry.resolve("sd15.autoencoder")[0]
    configs = conversion.synthetic_configs("tiny")
    first = trace_conversion(conversion, configs)
    second = trace_conversion(conversion, configs)
    assert not first.from_cache and second.from_cache
    assert second.keymap.digest() == first.keymap.digest() and second.model_class == first.model_class
    assert len(list(cache.iterdir())) == 1


def test_another_config_or_conversion_misses(cache: Path) -> None:
    conversion = registry.resolve("sd15.autoencoder")[0]
    configs = conversion.synthetic_configs("tiny")
    trace_conversion(conversion, configs)
    changed = {"vae": {**configs["vae"], "layers_per_block": 2}}
    assert not trace_conversion(conversion, changed).from_cache
    other = registry.resolve("sdxl.autoencoder")[0]
    assert not trace_conversion(other, other.synthetic_configs("tiny")).from_cache


def test_code_version_is_part_of_the_key(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conversion = registry.resolve("sd15.autoencoder")[0]
    configs = conversion.synthetic_configs("tiny")
    trace_conversion(conversion, configs)
    monkeypatch.setattr(keymap_cache, "code_digest", lambda: "another version of the code")
    assert not trace_conversion(conversion, configs).from_cache


def test_a_corrupt_entry_is_ignored_and_replaced(cache: Path) -> None:
    conversion = registry.resolve("sd15.autoencoder")[0]
    configs = conversion.synthetic_configs("tiny")
    trace_conversion(conversion, configs)
    (entry,) = cache.iterdir()
    entry.write_text('{"keymap": {"format": "nope"}}')
    assert not trace_conversion(conversion, configs).from_cache
    assert trace_conversion(conversion, configs).from_cache


def test_cached_conversion_writes_the_same_bytes(cache: Path, tmp_path: Path) -> None:
    first = convert("sd15.autoencoder", out=tmp_path / "a", synthetic="tiny")
    second = convert("sd15.autoencoder", out=tmp_path / "b", source=str(first.synthetic_source))
    assert second.results[0].sha256 == first.results[0].sha256
    assert any(cache.iterdir())


def test_caching_can_be_turned_off(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOO_NO_CACHE", "1")
    conversion = registry.resolve("sd15.autoencoder")[0]
    trace_conversion(conversion, conversion.synthetic_configs("tiny"))
    assert not cache.exists()

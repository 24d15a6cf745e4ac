"""Shared fixtures: the test device (ZOO_TEST_DEVICE, default cuda when available else cpu), and tiny
conversions from seeded synthetic sources, made once per session whatever test asks first."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from converters._convert.by_name import ConvertRun, SyntheticLayout, convert

TinyConversions = Callable[..., ConvertRun]


def _test_device() -> str:
    return os.environ.get("ZOO_TEST_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.fixture
def device() -> str:
    return _test_device()


@pytest.fixture(scope="session")
def tiny_converted(tmp_path_factory: pytest.TempPathFactory) -> TinyConversions:
    """`tiny_converted(name, layout="diffusers")`: NAME (a family or one conversion) converted from a
    seeded tiny synthetic source into its own folder, once per session; the result is shared, so tests
    must not change its files (copy them first)."""
    runs: dict[tuple[str, str], ConvertRun] = {}
    root = tmp_path_factory.mktemp("tiny-converted")

    def get(name: str, layout: SyntheticLayout = "diffusers") -> ConvertRun:
        if (name, layout) not in runs:
            out = Path(root) / f"{name}-{layout}"
            runs[name, layout] = convert(name, out=out, synthetic="tiny", synthetic_layout=layout)
        return runs[name, layout]

    return get


@pytest.fixture(scope="session")
def traced_key_maps(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A key-map cache folder for this session: full-size traces made (afresh) by one test are kept
    there, so a later test that needs the same ones (the manifest freshness check) reads them."""
    return tmp_path_factory.mktemp("keymap-cache")


def pytest_configure(config: pytest.Config) -> None:
    """Tests trace for real: no key map cache (tests of the cache turn it on in a temp folder).

    Set in the environment so the subprocesses tests start inherit it too. One thread per process too:
    test models are tiny, and on a small machine torch's worker threads cost more than they give
    (measured: a tiny UNet's parity test takes half the time on one thread of two cores).
    """
    os.environ["ZOO_NO_CACHE"] = "1"
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """GPU-marked tests skip cleanly without CUDA."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)

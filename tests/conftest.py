"""Shared fixtures: the test device (ZOO_TEST_DEVICE, default cuda when available else cpu)."""

from __future__ import annotations

import os

import pytest
import torch


def _test_device() -> str:
    return os.environ.get("ZOO_TEST_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.fixture
def device() -> str:
    return _test_device()


def pytest_configure(config: pytest.Config) -> None:
    """Tests trace for real: no key map cache (tests of the cache turn it on in a temp folder).

    Set in the environment so the subprocesses tests start inherit it too.
    """
    os.environ["ZOO_NO_CACHE"] = "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """GPU-marked tests skip cleanly without CUDA."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)

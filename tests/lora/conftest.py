"""The tiny SD 1.5 and SDXL bases every LoRA test uses, converted once per session."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from lora_helpers import TinyFamily  # pyright: ignore[reportMissingImports]

from converters._convert.by_name import ConvertRun


@pytest.fixture(scope="session")
def tiny(tiny_converted: Callable[..., ConvertRun]) -> dict[str, TinyFamily]:
    families = {}
    for family in ("sdxl", "sd15"):
        run = tiny_converted(family)
        assert run.synthetic_source is not None
        families[family] = TinyFamily(family, run.results[0].folder.parent, run.synthetic_source)
    return families

"""The tiny SD 1.5 and SDXL bases every LoRA test uses, converted once per session."""

from __future__ import annotations

import pytest
from lora_helpers import TinyFamily  # pyright: ignore[reportMissingImports]

from converters.run import convert


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TinyFamily]:
    out = tmp_path_factory.mktemp("lora-bases")
    families = {}
    for family in ("sdxl", "sd15"):
        run = convert(family, out=out / family, synthetic="tiny")
        assert run.synthetic_source is not None
        families[family] = TinyFamily(family, out / family, run.synthetic_source)
    return families

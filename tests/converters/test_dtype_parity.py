"""Low-precision parity: ours vs upstream in the same dtype, judged by upstream's own error vs float32.

On CPU (default run) at tiny size in bfloat16; on a GPU (`-m gpu`) at full size in float16 and bfloat16,
with random weights converted in memory through the traced key map.
"""

from __future__ import annotations

import json

import pytest
import torch

from converters import registry
from converters._verify.parity import DtypeParity, random_weight_parity

NAMES = [c.name for family in registry.families().values() for c in family.conversions]


def _check(result: DtypeParity) -> None:
    print(json.dumps(result.to_dict()))
    if result.upstream_error != result.upstream_error or result.upstream_error > 0.5:
        pytest.xfail(f"the upstream model itself overflows in {result.dtype} ({result.upstream_error})")
    # Ours in a low dtype must be about as close to float32 as upstream is in that dtype: rounding
    # happens in different places, so allow twice upstream's own error (plus a floor for exact cases).
    assert result.ours_error <= max(2 * result.upstream_error, 1e-3)


@pytest.mark.parametrize("name", ["sdxl.unet", "sdxl.text_encoder", "sd15.autoencoder"])
def test_tiny_bfloat16_on_cpu(name: str) -> None:
    _check(random_weight_parity(registry.resolve(name)[0], "tiny", "cpu", torch.bfloat16))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name", NAMES)
def test_full_size_on_gpu(name: str, dtype: torch.dtype) -> None:
    torch.cuda.reset_peak_memory_stats()
    _check(random_weight_parity(registry.resolve(name)[0], "full", "cuda", dtype))

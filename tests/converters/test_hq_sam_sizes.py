"""`zoo convert hq_sam --source FILE` converts the size the file is: the HQ modules' widths name one
released SAM (768, 1024, 1280), Light HQ-SAM's TinyViT width (160) is refused with its reason, and a test
twin of no released width fits every size, so the name must be given. The files hold only the two
tensors the widths are read from, so no module is built."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from converters._convert.pick import pick_conversion
from converters.hq_sam import CONVERSIONS
from converters.hq_sam.original import VIT_FEATURES_KEY
from converters.hq_sam.sizes import RELEASES, HQRelease
from converters.sam.original import HQ_MARKER
from zoo.errors import ConfigError

DECODER_WIDTH = 256  # every released SAM's mask decoder
LIGHT_VIT_WIDTH = 160
TWIN_VIT_WIDTH = 48


def _hq_file(folder: Path, vit_width: int, decoder_width: int = DECODER_WIDTH) -> Path:
    """A file with the HQ token and the first ViT-feature convolution of these widths."""
    path = folder / f"sam_hq_{vit_width}.pth"
    state = {
        HQ_MARKER: torch.zeros(1, decoder_width),
        VIT_FEATURES_KEY: torch.zeros(vit_width, decoder_width, 2, 2),
    }
    torch.save(state, path)
    return path


@pytest.mark.parametrize("release", RELEASES, ids=[release.name for release in RELEASES])
def test_a_released_width_picks_its_size(release: HQRelease, tmp_path: Path) -> None:
    path = _hq_file(tmp_path, release.config.vit_dim)
    assert pick_conversion(list(CONVERSIONS.values()), str(path)).name == release.conversion


def test_light_hq_sam_is_refused_by_each_size_with_its_reason(tmp_path: Path) -> None:
    path = _hq_file(tmp_path, LIGHT_VIT_WIDTH)
    with pytest.raises(ConfigError, match=r"fits none.*hq_sam\.vit_b: it holds Light HQ-SAM.*TinyViT"):
        pick_conversion(list(CONVERSIONS.values()), str(path))


def test_a_twin_of_no_released_width_asks_for_a_name(tmp_path: Path) -> None:
    path = _hq_file(tmp_path, TWIN_VIT_WIDTH, decoder_width=32)
    with pytest.raises(ConfigError, match=r"fits several conversions \(hq_sam\.vit_b, hq_sam\.vit_l"):
        pick_conversion(list(CONVERSIONS.values()), str(path))


def test_a_named_size_refuses_another_sizes_file(tmp_path: Path) -> None:
    vit_l = next(release for release in RELEASES if release.name == "vit_l")
    path = _hq_file(tmp_path, vit_l.config.vit_dim)
    wrong = [CONVERSIONS["vit_b"]]
    with pytest.raises(ConfigError, match=r"HQ-SAM ViT-L.*not HQ-SAM ViT-B.*convert it as hq_sam\.vit_l"):
        pick_conversion(wrong, str(path))

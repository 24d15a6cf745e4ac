"""Converting Segment Anything: Meta's original checkpoints and transformers' `SamModel` folders give the
same bytes, the config comes from the checkpoint's shapes, `zoo convert sam --source FILE` picks the size
the file holds, and a wrong size, a truncated file or an unknown key is one clear error with nothing
written."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from segment_anything_reference import (  # pyright: ignore[reportMissingImports]
    TINY,
    original_sam,
    relative_error,
    save_original,
)

from converters._convert.by_name import convert
from converters._convert.pick import pick_conversion
from converters._convert.sources import SingleFileSource
from converters._single_file.replay import single_file_configs
from converters.sam import CONVERSIONS, VIT_B
from converters.sam.configs import derive_config, upstream_config
from converters.sam.original import to_transformers
from converters.sam.reference import transformers_sam
from zoo.errors import ConfigError, CoverageError, FormatError
from zoo.foundationals.segment_anything.model import SegmentAnythingConfig

WEIGHTS = "model.safetensors"


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """A tiny reference and its original checkpoint."""
    reference = original_sam(TINY, seed=21)
    return reference, save_original(reference, tmp_path_factory.mktemp("original") / "sam_tiny.pth")


def test_the_config_comes_from_the_checkpoint_shapes(original: tuple[Any, Path]) -> None:
    configs = single_file_configs(VIT_B, SingleFileSource(original[1]))
    assert derive_config(configs["sam"]) == TINY


def test_original_and_transformers_layouts_convert_to_the_same_bytes(
    original: tuple[Any, Path], tmp_path: Path
) -> None:
    reference, path = original
    configs = single_file_configs(VIT_B, SingleFileSource(path))
    port: Any = transformers_sam(configs["sam"]).eval()
    port.load_state_dict(to_transformers(reference.state_dict(), configs), strict=False)
    image = torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(22))
    with torch.no_grad():  # the renamed weights make transformers' port compute what the original does
        assert relative_error(port.get_image_embeddings(image), reference.image_encoder(image)) <= 1e-5
    port.save_pretrained(tmp_path / "sam-tiny")
    convert("sam.vit_b", out=tmp_path / "from-original", source=str(path))
    convert("sam.vit_b", out=tmp_path / "from-transformers", source=str(tmp_path / "sam-tiny"))
    assert (tmp_path / "from-original/sam.vit_b" / WEIGHTS).read_bytes() == (
        tmp_path / "from-transformers/sam.vit_b" / WEIGHTS
    ).read_bytes()


def _vit_b_shaped(path: Path, extra: dict[str, torch.Tensor] | None = None) -> Path:
    """An original ViT-B checkpoint of zeros stored once each (a few KB): shapes without weights."""
    from segment_anything import sam_model_registry

    with torch.device("meta"):
        shapes = {key: tensor.shape for key, tensor in sam_model_registry["vit_b"]().state_dict().items()}
    torch.save({key: torch.zeros(()).expand(shape) for key, shape in shapes.items()} | (extra or {}), path)
    return path


def test_the_family_converts_the_size_the_file_holds(tmp_path: Path) -> None:
    run = convert(
        "sam", out=tmp_path / "out", source=str(_vit_b_shaped(tmp_path / "vit_b.pth")), dry_run=True
    )
    assert [result.name for result in run.results] == ["sam.vit_b"]
    assert run.results[0].params == 93_735_728


def test_a_file_of_another_size_is_one_error_naming_both(tmp_path: Path) -> None:
    path = _vit_b_shaped(tmp_path / "vit_b.pth")
    with pytest.raises(ConfigError, match=r"SAM ViT-B .* not SAM ViT-H .*: convert it as sam\.vit_b"):
        convert("sam.vit_h", out=tmp_path / "out", source=str(path))
    assert not (tmp_path / "out").exists()


def test_a_folder_of_another_size_is_one_error_naming_both(tmp_path: Path) -> None:
    folder = tmp_path / "sam-vit-base"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(upstream_config(SegmentAnythingConfig.vit_b())))
    torch.save({"unused": torch.zeros(1)}, folder / "pytorch_model.bin")
    with pytest.raises(ConfigError, match="not SAM ViT-L"):
        convert("sam.vit_l", out=tmp_path / "out", source=str(folder))
    assert not (tmp_path / "out").exists()


def _damaged(original: tuple[Any, Path], path: Path, change: Any) -> Path:
    state = dict(original[0].state_dict())
    change(state)
    torch.save(state, path)
    return path


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (
            lambda s: s.update({"mask_decoder.adapter.weight": torch.zeros(2)}),
            CoverageError,
            "mask_decoder.adapter",
        ),
        (lambda s: s.update({"step": torch.zeros(())}), CoverageError, "step"),
        (lambda s: s.pop("mask_decoder.iou_token.weight"), ConfigError, "iou_token"),
        (lambda s: s.update({"mask_decoder.hf_token.weight": torch.zeros(1, 32)}), ConfigError, "HQ-SAM"),
    ],
    ids=["unknown key", "unknown top-level key", "missing tensor", "an HQ-SAM file"],
)
def test_bad_files_are_one_error_and_write_nothing(
    original: tuple[Any, Path], tmp_path: Path, change: Any, error: type[Exception], message: str
) -> None:
    path = _damaged(original, tmp_path / "bad.pth", change)
    with pytest.raises(error, match=message) as raised:
        convert("sam.vit_b", out=tmp_path / "out", source=str(path))
    assert str(path) in str(raised.value)
    assert not (tmp_path / "out").exists()


def test_a_truncated_file_is_one_error_and_writes_nothing(original: tuple[Any, Path], tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(original[1].read_bytes()[:-4096])
    with pytest.raises(FormatError, match="damaged zip archive"):
        convert("sam.vit_b", out=tmp_path / "out", source=str(truncated))
    assert not (tmp_path / "out").exists()


def test_unsupported_transformers_configs_are_refused() -> None:
    config = upstream_config(TINY)
    config["mask_decoder_config"]["hidden_act"] = "gelu"
    with pytest.raises(ConfigError, match=r"mask_decoder_config\.hidden_act='gelu'"):
        derive_config(config)
    config = upstream_config(TINY)
    config["vision_config"]["use_rel_pos"] = False
    with pytest.raises(ConfigError, match="use_rel_pos"):
        derive_config(config)


def test_the_transformers_config_round_trips() -> None:
    for config in (TINY, SegmentAnythingConfig.vit_h()):
        upstream = upstream_config(config)
        derived = derive_config(upstream)
        assert upstream_config(derived) == upstream


def test_a_source_no_alternative_fits_is_one_error_with_each_reason(original: tuple[Any, Path]) -> None:
    refusing = [dataclasses.replace(c, family_check=lambda _c, n=c.name: f"not {n}") for c in CONVERSIONS]
    with pytest.raises(
        ConfigError, match=r"fits none of the conversions: sam\.vit_b: not sam\.vit_b; sam\.vit_l"
    ):
        pick_conversion(refusing, str(original[1]))
    # A tiny model is of no released size: it fits every size, and the error asks to name one.
    with pytest.raises(ConfigError, match=r"fits several conversions \(sam\.vit_b, sam\.vit_l, sam\.vit_h\)"):
        pick_conversion(list(CONVERSIONS), str(original[1]))
    accepting_one = [
        c if c is VIT_B else dataclasses.replace(c, family_check=lambda _c: "no") for c in CONVERSIONS
    ]
    assert pick_conversion(accepting_one, str(original[1])).name == "sam.vit_b"

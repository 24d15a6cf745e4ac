"""HQ-SAM as adapters on our SAM, against SysCV's `segment_anything_hq` built with the same tiny config
and seeded random weights: the SAM converted from the SAM part of its checkpoint, the HQ modules with
`zoo convert hq-sam FILE --base BASE` (recorded, verified and reproduced like any conversion). Injected
and ejected, SAM stays bit for bit what it was."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from segment_anything_reference import (  # pyright: ignore[reportMissingImports]
    TINY,
    convert_original,
    original_hq_sam,
    relative_error,
    save_original,
)

import zoo
import zoo.fluxion as fl
from converters._convert.by_name import convert
from converters._reports.file_report import inspect_file
from converters._verify.verify import verify
from converters.hq_sam.convert import convert_hq_sam
from converters.hq_sam.original import is_hq_key
from zoo.cli import main
from zoo.errors import ConfigError, CoverageError, FormatError
from zoo.foundationals.segment_anything.hq_sam import HQSAM, HQSAMAdapter, HQSAMConfig
from zoo.foundationals.segment_anything.model import SegmentAnything, SegmentAnythingConfig
from zoo.hub import sha256_file
from zoo.manifest import read_manifest

# Importing segment_anything_hq registers its TinyViT models in timm's registry, over timm's own.
pytestmark = pytest.mark.filterwarnings("ignore:Overwriting tiny_vit", "ignore:Importing from timm")
LIMIT = 1e-5
SIZE, MASK = TINY.image_encoder.image_size, TINY.prompt_encoder.mask_size


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _sam_part(hq_reference: Any) -> dict[str, torch.Tensor]:
    return {key: value for key, value in hq_reference.state_dict().items() if not is_hq_key(key)}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The HQ reference, its checkpoint, the SAM base converted from its SAM part, the HQ output."""
    folder = tmp_path_factory.mktemp("hq")
    reference = original_hq_sam(TINY, seed=11)
    hq_file = save_original(reference, folder / "sam_hq_tiny.pth")
    sam_file = folder / "sam_tiny.pth"
    torch.save(_sam_part(reference), sam_file)
    convert_original(sam_file, folder / "out")
    result = convert_hq_sam(hq_file, folder / "out" / "sam.vit_b", out=folder / "hq")
    return {
        "reference": reference,
        "hq_file": hq_file,
        "base": folder / "out" / "sam.vit_b",
        "result": result,
    }


def _loaded(files: dict[str, Any]) -> tuple[SegmentAnything, HQSAM]:
    model, hq = zoo.load(str(files["base"])), zoo.load(str(files["result"].result.folder))
    assert isinstance(model, SegmentAnything) and isinstance(hq, HQSAM)
    return model, hq


def _hq_model(files: dict[str, Any], hq_token_only: bool = False) -> tuple[SegmentAnything, HQSAMAdapter]:
    model, hq = _loaded(files)
    return model, HQSAMAdapter(model, hq, hq_token_only=hq_token_only).inject()


def _prompts() -> dict[str, dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(12)
    points = torch.rand(2, 2, 2, generator=generator) * SIZE
    labels = torch.tensor([[1, 0], [1, 1]])
    boxes = (torch.rand(2, 4, generator=generator) * SIZE).reshape(2, 2, 2).sort(dim=1).values.reshape(2, 4)
    masks = torch.randn(2, 1, MASK, MASK, generator=generator) * 3
    return {
        "points": {"points": points, "labels": labels},
        "box": {"boxes": boxes},
        "points_box_mask": {"points": points, "labels": labels, "boxes": boxes, "masks": masks},
    }


def _reference_run(
    reference: Any, image: torch.Tensor, prompt: dict[str, torch.Tensor], multimask: bool, hq_token_only: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    embedding, intermediate = reference.image_encoder(image)
    points = (prompt["points"], prompt["labels"]) if "points" in prompt else None
    sparse, dense = reference.prompt_encoder(
        points=points, boxes=prompt.get("boxes"), masks=prompt.get("masks")
    )
    return reference.mask_decoder(
        image_embeddings=embedding,
        image_pe=reference.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=multimask,
        hq_token_only=hq_token_only,
        interm_embeddings=intermediate,
    )


@pytest.mark.parametrize("hq_token_only", [False, True])
@pytest.mark.parametrize("multimask", [True, False])
@pytest.mark.parametrize("kind", list(_prompts()))
def test_hq_masks_equal_the_original(
    files: dict[str, Any], kind: str, multimask: bool, hq_token_only: bool
) -> None:
    model, _ = _hq_model(files, hq_token_only)
    image = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(13))
    prompt = _prompts()[kind]
    with torch.no_grad():
        expected = _reference_run(files["reference"], image, prompt, multimask, hq_token_only)
        found = model.decode(model.encode_image(image), multimask_output=multimask, **prompt)
    errors = [relative_error(a, b) for a, b in zip(found, expected, strict=True)]
    print(f"HQ {kind}, multimask {multimask}, hq_token_only {hq_token_only}: relative errors {errors}")
    assert [t.shape for t in found] == [t.shape for t in expected]
    assert max(errors) <= LIMIT


def test_injecting_and_ejecting_leaves_sam_bit_for_bit(files: dict[str, Any]) -> None:
    model, hq = _loaded(files)
    before = {key: tensor.clone() for key, tensor in model.state_dict().items()}
    image = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(14))
    prompt = _prompts()["points"]
    with torch.no_grad():
        plain = model(image, **prompt)
        adapter = HQSAMAdapter(model, hq).inject()
        assert fl.base_state_dict(model).keys() == before.keys()
        assert all(torch.equal(fl.base_state_dict(model)[key], before[key]) for key in before)
        adapted = model(image, **prompt)
        adapter.eject()
        again = model(image, **prompt)
    assert adapted[0].shape[1] == 1 and plain[0].shape[1] == 3
    assert model.state_dict().keys() == before.keys()
    assert all(torch.equal(model.state_dict()[key], before[key]) for key in before)
    assert all(torch.equal(a, b) for a, b in zip(plain, again, strict=True))


def test_the_output_is_deterministic_and_recognized(files: dict[str, Any], tmp_path: Path) -> None:
    again = convert_hq_sam(files["hq_file"], files["base"], out=tmp_path).result
    first = files["result"].result
    assert again.folder.name == first.folder.name == "hq_sam.vit_b"
    for name in ("model.safetensors", "config.json"):
        assert (again.folder / name).read_bytes() == (first.folder / name).read_bytes()
    assert "converted by zoo: hq_sam.vit_b" in (inspect_file(again.folder).kind or "")
    assert "HQ-SAM checkpoint" in (inspect_file(files["hq_file"]).kind or "")


def test_the_declared_conversion_writes_the_same_bytes(files: dict[str, Any], tmp_path: Path) -> None:
    run = convert("hq_sam.vit_b", out=tmp_path, source=str(files["hq_file"]))
    assert run.results[0].sha256 == files["result"].result.sha256


def test_the_run_is_recorded_and_verifies(files: dict[str, Any]) -> None:
    out = files["result"].result.folder.parent
    entry = read_manifest(out / "manifest.json").entries["hq_sam.vit_b"]
    assert [source["sha256"] for source in entry["sources"]] == [sha256_file(files["hq_file"])]
    report = verify([str(out)], out, hashes=True, reproduce=True)
    assert report.ok and {f.check for f in report.findings} == {"hashes", "reproduce"}
    assert all(f.status == "ok" for f in report.findings)


def test_an_edited_output_fails_verification(files: dict[str, Any], tmp_path: Path) -> None:
    run = convert_hq_sam(files["hq_file"], files["base"], out=tmp_path)
    weights = run.result.folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    report = verify([str(tmp_path)], tmp_path, hashes=True, reproduce=True)
    assert not report.ok and {f.check for f in report.failures} == {"hashes", "reproduce"}


def test_the_command_line_converts_with_a_base(files: dict[str, Any], tmp_path: Path) -> None:
    args = ["convert", "hq-sam", str(files["hq_file"]), "--base", str(files["base"]), "--out", str(tmp_path)]
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["sha256"] == files["result"].result.sha256 and summary["warnings"] == []
    assert summary["conversion"] == "hq_sam.vit_b" and summary["manifest"] == str(tmp_path / "manifest.json")
    checked = CliRunner().invoke(main, ["verify", str(tmp_path), "--hashes", "--reproduce"])
    assert checked.exit_code == 0, checked.output
    plan = ["publish", "hq_sam.vit_b", "--repo", "me/hq-sam", "--out", str(tmp_path), "--dry-run", "--json"]
    # Publish finds the entry and its files; a local copy's licence is unknown, as for every family.
    published = CliRunner().invoke(main, plan)
    assert (
        published.exit_code == 1
        and "refusing to publish hq_sam.vit_b: its licence is unknown" in published.output
    )


def _rewritten(files: dict[str, Any], path: Path, change: Any) -> Path:
    state = dict(files["reference"].state_dict())
    change(state)
    torch.save(state, path)
    return path


def test_wrong_base_size_is_one_error_and_writes_nothing(files: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"for a SAM of width 32.*is SAM ViT-B"):
        convert_hq_sam(files["hq_file"], "sam.vit_b", out=tmp_path)
    assert not any(tmp_path.iterdir())


def test_modules_of_another_size_are_refused_by_the_adapter(files: dict[str, Any]) -> None:
    model, _ = _loaded(files)
    with torch.device("meta"):
        other = HQSAM(HQSAMConfig.vit_b())
    with pytest.raises(ConfigError, match=r"width 768.*width 32"):
        HQSAMAdapter(model, other)


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (lambda s: s.update({"mask_decoder.hf_extra.weight": torch.zeros(3)}), CoverageError, "hf_extra"),
        (
            lambda s: s.update({"mask_decoder.hf_mlp.layers.3.weight": torch.zeros(3)}),
            CoverageError,
            "does not have",
        ),
        (lambda s: s.pop("mask_decoder.hf_token.weight"), ConfigError, "missing.*hf_token.weight"),
        (lambda s: s.pop("mask_decoder.hf_mlp.layers.1.bias"), CoverageError, "missing"),
        (lambda s: s.update({"mask_decoder.hf_token.weight": torch.zeros(1, 8)}), ConfigError, "width 8"),
        (
            lambda s: s.update({"mask_decoder.embedding_encoder.0.weight": torch.zeros(32, 4, 2, 2)}),
            CoverageError,
            "embedding_encoder.0.weight",
        ),
    ],
    ids=[
        "unknown key",
        "extra HQ layer",
        "missing HQ token",
        "missing HQ tensor",
        "wrong width",
        "wrong shape",
    ],
)
def test_bad_hq_files_are_one_error_and_write_nothing(
    files: dict[str, Any], tmp_path: Path, change: Any, error: type[Exception], message: str
) -> None:
    path = _rewritten(files, tmp_path / "bad.pth", change)
    with pytest.raises(error, match=message) as raised:
        convert_hq_sam(path, files["base"], out=tmp_path / "out")
    assert str(path) in str(raised.value)
    assert not (tmp_path / "out").exists()


def test_a_truncated_file_and_a_plain_sam_file_are_refused(files: dict[str, Any], tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(files["hq_file"].read_bytes()[:5000])
    with pytest.raises(FormatError, match="damaged zip archive"):
        convert_hq_sam(truncated, files["base"], out=tmp_path / "out")
    plain = tmp_path / "plain.pth"
    torch.save(_sam_part(files["reference"]), plain)
    with pytest.raises(FormatError, match="no HQ-SAM module"):
        convert_hq_sam(plain, files["base"], out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_other_sam_weights_in_the_base_are_reported(files: dict[str, Any], tmp_path: Path) -> None:
    other = _rewritten(files, tmp_path / "other.pth", lambda s: s["mask_decoder.iou_token.weight"].add_(1.0))
    result = convert_hq_sam(other, files["base"], out=tmp_path / "out", dry_run=True).result
    assert len(result.warnings) == 1 and "1 SAM tensor(s)" in result.warnings[0]
    assert result.dry_run and not (tmp_path / "out").exists()


@pytest.mark.parametrize("size", ["vit_b", "vit_l", "vit_h"])
def test_full_size_parameter_counts_equal_the_original(size: str) -> None:
    from segment_anything_hq import sam_model_registry

    with torch.device("meta"):
        sam = SegmentAnything(getattr(SegmentAnythingConfig, size)())
        hq = HQSAM(getattr(HQSAMConfig, size)())
        reference = sam_model_registry[size]()
    count = sum(p.numel() for p in sam.parameters()) + sum(p.numel() for p in hq.parameters())
    print(f"HQ-SAM {size}: {count:,} parameters")
    assert count == sum(t.numel() for t in reference.state_dict().values())

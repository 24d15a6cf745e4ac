"""CLIP image encoders from the files people have: OpenCLIP checkpoints (vs open-clip-torch), whole CLIP
model folders, the size picked from the source, and sources of no declared kind refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

import zoo
from converters._convert.by_name import convert
from converters._detect import detect_checkpoint
from converters._verify.parity import relative_error
from converters.clip_vision import VIT_BIG_G14, VIT_H14, VIT_L14
from zoo.cli import main
from zoo.errors import ConfigError, CoverageError

LIMIT = 1e-5
# A tiny OpenCLIP model with ViT-H/14's kind (80-channel heads, GELU, 14-pixel patches).
VISION_CFG = {
    "image_size": 28,
    "patch_size": 14,
    "width": 160,
    "layers": 2,
    "head_width": 80,
    "mlp_ratio": 2.0,
}
TEXT_CFG = {"context_length": 8, "vocab_size": 100, "width": 32, "heads": 2, "layers": 1}


def _open_clip_model() -> Any:
    from open_clip.model import CLIP

    torch.manual_seed(0)
    return CLIP(embed_dim=24, vision_cfg=VISION_CFG, text_cfg=TEXT_CFG).eval()


def _pixels(size: int = 28) -> torch.Tensor:
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(3))


@pytest.fixture(scope="module")
def open_clip_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The same whole OpenCLIP model (text tower included) as a pickle and as safetensors."""
    folder = tmp_path_factory.mktemp("open_clip")
    model = _open_clip_model()
    state = {key: tensor.contiguous() for key, tensor in model.state_dict().items()}
    torch.save(state, folder / "open_clip_pytorch_model.bin")
    save_file(state, folder / "open_clip_model.safetensors")
    return {
        "model": model,
        "bin": folder / "open_clip_pytorch_model.bin",
        "st": folder / "open_clip_model.safetensors",
    }


def test_open_clip_checkpoints_convert_with_parity_and_the_same_bytes(
    open_clip_files: dict[str, Any], tmp_path: Path
) -> None:
    runs = {
        fmt: convert("clip_vision", out=tmp_path / fmt, source=str(open_clip_files[fmt]))
        for fmt in ("bin", "st")
    }
    assert [r.name for r in runs["bin"].results] == [VIT_H14.name]  # the size was read from the shapes
    assert runs["bin"].results[0].sha256 == runs["st"].results[0].sha256
    ours = zoo.load(runs["bin"].results[0].folder)
    with torch.no_grad():
        expected = open_clip_files["model"].encode_image(_pixels())
        found = ours(_pixels())
    error = relative_error(found, expected)
    print(f"OpenCLIP image embedding: relative error {error:.2e}")
    assert error <= LIMIT


def test_a_truncated_open_clip_file_names_the_missing_tensor(
    open_clip_files: dict[str, Any], tmp_path: Path
) -> None:
    state = {k: v.contiguous() for k, v in open_clip_files["model"].state_dict().items()}
    del state["visual.transformer.resblocks.1.attn.in_proj_bias"]
    save_file(state, tmp_path / "truncated.safetensors")
    with pytest.raises(CoverageError, match="in_proj_bias") as caught:
        convert(VIT_H14.name, out=tmp_path / "out", source=str(tmp_path / "truncated.safetensors"))
    assert caught.value.file == str(tmp_path / "truncated.safetensors")
    assert not (tmp_path / "out").exists()


def test_a_whole_clip_model_folder_converts_its_image_tower(tmp_path: Path) -> None:
    from transformers import CLIPConfig, CLIPModel, CLIPVisionModelWithProjection

    vision = {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 2}
    vision |= {"image_size": 28, "patch_size": 14, "hidden_act": "quick_gelu", "projection_dim": 16}
    text = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
    torch.manual_seed(0)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(
        tmp_path / "clip"
    )
    run = convert("clip_vision", out=tmp_path / "out", source=str(tmp_path / "clip"))
    assert [r.name for r in run.results] == [VIT_L14.name]  # a variant, picked by its kind
    reference = CLIPVisionModelWithProjection.from_pretrained(tmp_path / "clip").eval()
    with torch.no_grad():
        error = relative_error(zoo.load(run.results[0].folder)(_pixels()), reference(_pixels()).image_embeds)
    assert error <= LIMIT


def test_the_command_line_picks_the_size_from_the_source(tiny_converted: Any, tmp_path: Path) -> None:
    source = tiny_converted(VIT_BIG_G14.name).synthetic_source
    args = ["convert", "clip-vision", "--source", str(source), "--out", str(tmp_path), "--json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.stderr
    assert [c["name"] for c in json.loads(result.stdout)["components"]] == [VIT_BIG_G14.name]


def test_a_source_of_no_declared_kind_is_refused_naming_each(tiny_converted: Any, tmp_path: Path) -> None:
    source = Path(tiny_converted(VIT_H14.name).synthetic_source)
    config = json.loads((source / "image_encoder" / "config.json").read_text())
    (source.parent / "odd").mkdir(exist_ok=True)
    odd = source.parent / "odd"
    (odd / "config.json").write_text(json.dumps(config | {"num_attention_heads": 5}))
    (odd / "model.safetensors").write_bytes((source / "image_encoder" / "model.safetensors").read_bytes())
    result = CliRunner().invoke(
        main, ["convert", "clip_vision", "--source", str(odd), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 1
    for name in (VIT_H14.name, VIT_BIG_G14.name, VIT_L14.name):
        assert name in result.stderr
    assert "32-channel heads" in result.stderr and not (tmp_path / "o").exists()


def test_the_wrong_size_named_explicitly_is_refused(tiny_converted: Any, tmp_path: Path) -> None:
    source = tiny_converted(VIT_BIG_G14.name).synthetic_source
    with pytest.raises(
        ConfigError, match=r"not a clip_vision\.vit_h14 checkpoint: 104-channel heads.*ViT-H/14 has 80"
    ):
        convert(VIT_H14.name, out=tmp_path, source=str(source))
    assert not (tmp_path / VIT_H14.name).exists()


def test_with_synthetic_the_family_asks_for_one_conversion(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="alternatives"):
        convert("clip_vision", out=tmp_path, synthetic="tiny")


@pytest.mark.parametrize("declared", [VIT_H14, VIT_BIG_G14, VIT_L14], ids=lambda c: c.name)
def test_inspect_names_the_size_of_full_size_files(declared: Any) -> None:
    config = declared.derive_config(declared.synthetic_configs("full"))
    with torch.device("meta"):
        reference = declared.parts[0].build(declared.synthetic_configs("full")["image_encoder"])
    transformers_shapes = {key: tuple(t.shape) for key, t in reference.state_dict().items()}
    open_clip_shapes = {"visual.conv1.weight": (config.hidden_size, 3, 14, 14), "logit_scale": ()}
    for shapes in (transformers_shapes, open_clip_shapes):
        found = detect_checkpoint(shapes)
        assert found is not None and found.conversion == declared.name, found

"""Swin sources as users have them: original release and timm files against timm, every transformers
layout to the same bytes, `zoo inspect`, and hostile files (one clear error each, nothing written)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file
from timm.models.swin_transformer import SwinTransformer as TimmSwin
from timm.models.swin_transformer import checkpoint_filter_fn
from torch import nn

import zoo
from converters import registry
from converters._convert.by_name import convert
from converters._detect import detect_checkpoint
from converters.swin.keys import hub_key, model_key
from converters.swin.original_writer import original_state_dict
from converters.swin.upstream import (
    example_images,
    random_weights,
    run_ours,
    swin_model,
    upstream_swin_config,
)
from zoo.cli import main
from zoo.errors import ConfigError, CoverageError, FormatError, ZooError
from zoo.foundationals.swin import SwinConfig, SwinTransformer

LIMIT = 1e-5
TOY = SwinConfig.toy()
BACKBONE = "swin.backbone"
IMAGENET_CLASSES = 1000  # the heads of the releases, which conversions ignore
ZooErrorType = type[ZooError]


def _seeded(build: Callable[[], nn.Module], seed: int = 0) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return build()


def _timm(config: SwinConfig, image_size: int) -> nn.Module:
    """timm's Swin for `config` at an image size (timm fixes windows and masks for one size)."""
    return TimmSwin(
        img_size=image_size,
        patch_size=config.patch_size,
        in_chans=config.num_channels,
        embed_dim=config.embed_dim,
        depths=config.depths,
        num_heads=config.num_heads,
        window_size=config.window_size,
        num_classes=IMAGENET_CLASSES,
    ).eval()


def _timm_outputs(model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """timm's stage features, last hidden state (final norm) and its mean, as `run_ours` orders them."""
    final, stages = model.forward_intermediates(images)  # pyright: ignore[reportCallIssue]
    tokens = final.flatten(1, 2)
    return (*stages, tokens, tokens.mean(1))


def _max_error(ours: tuple[torch.Tensor, ...], reference: tuple[torch.Tensor, ...]) -> float:
    assert [t.shape for t in ours] == [t.shape for t in reference]
    return max(((a - b).abs().max() / b.abs().max()).item() for a, b in zip(ours, reference, strict=True))


def _loaded(folder: Path) -> SwinTransformer:
    model = zoo.load(str(folder))
    assert isinstance(model, SwinTransformer)
    return model


def _weights(folder: Path) -> bytes:
    return (folder / "model.safetensors").read_bytes()


# -- sources ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def upstream() -> nn.Module:
    """transformers' `SwinModel` for the toy config, seeded random weights."""
    return _seeded(lambda: swin_model(upstream_swin_config(TOY)))


@pytest.fixture(scope="module")
def folder(upstream: nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """As `save_pretrained` writes it: transformers 4.x names, no prefix."""
    path = tmp_path_factory.mktemp("swin-folder")
    upstream.save_pretrained(path)  # pyright: ignore[reportCallIssue]
    return path


def _hub_like(folder: Path, target: Path) -> Path:
    """A Hub release's layout: `swin.` prefix, the 4.x index buffers, the classifier, its config.json."""
    state = {hub_key(key): tensor for key, tensor in load_file(folder / "model.safetensors").items()}
    for key in [key for key in state if key.endswith("attention.self.relative_position_bias_table")]:
        state[key.replace("relative_position_bias_table", "relative_position_index")] = torch.zeros(
            TOY.window_size**2, TOY.window_size**2, dtype=torch.long
        )
    state["classifier.weight"] = torch.zeros(IMAGENET_CLASSES, TOY.num_features)
    state["classifier.bias"] = torch.zeros(IMAGENET_CLASSES)
    target.mkdir()
    save_file(state, target / "model.safetensors")
    config = json.loads((folder / "config.json").read_text())
    config |= {"architectures": ["SwinForImageClassification"], "id2label": {"0": "tench"}}
    (target / "config.json").write_text(json.dumps(config))
    return target


@pytest.fixture(scope="module")
def original_file(upstream: nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An original release file: `{"model": ...}` with microsoft's names, buffers and head."""
    path = tmp_path_factory.mktemp("swin-original") / "swin_toy_patch2_window3_24.pth"
    torch.save({"model": original_state_dict(upstream.state_dict(), TOY)}, path)
    return path


@pytest.fixture(scope="module")
def converted(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder converted by `swin.backbone`."""
    out = tmp_path_factory.mktemp("converted")
    return convert(BACKBONE, out=out, source=str(folder)).results[0].folder


# -- original and timm files, against timm --------------------------------------------------------


@pytest.mark.parametrize("image_size", [TOY.image_size, 2 * TOY.image_size])
def test_an_original_release_file_converts_to_what_timm_computes_from_it(
    original_file: Path, tmp_path: Path, image_size: int
) -> None:
    args = ["convert", "swin", "--source", str(original_file), "--out", str(tmp_path)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    ours = _loaded(tmp_path / BACKBONE)
    reference = _timm(TOY, image_size)
    state = checkpoint_filter_fn(torch.load(original_file, weights_only=True), reference)
    reference.load_state_dict(state, strict=True)
    images = example_images(TOY, size=(image_size, image_size))
    with torch.no_grad():
        error = _max_error(run_ours(ours, images), _timm_outputs(reference, images))
    print(f"original file vs timm at {image_size} px: relative error {error:.2e}")
    assert error <= LIMIT


def test_a_timm_file_converts_to_what_timm_computes(tmp_path: Path) -> None:
    # timm starts norms and biases at constants: every tensor is drawn instead, as for transformers.
    reference = _seeded(lambda: random_weights(_timm(TOY, TOY.image_size)))
    save_file(
        {key: t.contiguous() for key, t in reference.state_dict().items()}, tmp_path / "timm.safetensors"
    )
    ours = _loaded(
        convert("swin", out=tmp_path / "out", source=str(tmp_path / "timm.safetensors")).results[0].folder
    )
    images = example_images(TOY)
    with torch.no_grad():
        error = _max_error(run_ours(ours, images), _timm_outputs(reference, images))
    print(f"timm file vs timm: relative error {error:.2e}")
    assert error <= LIMIT


# -- transformers layouts ---------------------------------------------------------------------------


def test_every_layout_of_the_same_weights_converts_to_the_same_bytes(
    upstream: nn.Module, folder: Path, converted: Path, original_file: Path, tmp_path: Path
) -> None:
    """4.x names, the Hub's (prefix, index buffers, head), 5.x names, and the original release file."""
    transformers5 = tmp_path / "transformers5"
    shutil.copytree(folder, transformers5)
    save_file(
        {k: t.contiguous() for k, t in upstream.state_dict().items()}, transformers5 / "model.safetensors"
    )
    sources = [_hub_like(folder, tmp_path / "hub"), transformers5, original_file]
    for index, source in enumerate(sources):
        result = convert(BACKBONE, out=tmp_path / f"out{index}", source=str(source)).results[0]
        assert _weights(result.folder) == _weights(converted), source.name


def test_transformers_4x_names_map_onto_5x_names() -> None:
    assert (
        model_key("swin.encoder.layers.1.blocks.0.attention.output.dense.weight")
        == "encoder.layers.1.blocks.0.attention.o_proj.weight"
    )
    assert (
        model_key("encoder.layers.0.blocks.1.output.dense.bias") == "encoder.layers.0.blocks.1.mlp.fc2.bias"
    )
    assert model_key("encoder.layers.0.blocks.1.mlp.fc2.bias") == "encoder.layers.0.blocks.1.mlp.fc2.bias"


# -- zoo inspect ----------------------------------------------------------------------------------------


def test_inspect_tells_the_layouts_and_the_releases(
    folder: Path, original_file: Path, tmp_path: Path
) -> None:
    original = detect_checkpoint(
        {k: tuple(v.shape) for k, v in torch.load(original_file, weights_only=True)["model"].items()}
    )
    assert (
        original is not None and original.conversion == BACKBONE and "original layout" in original.description
    )
    hub = detect_checkpoint(
        {
            k: tuple(v.shape)
            for k, v in load_file(_hub_like(folder, tmp_path / "h") / "model.safetensors").items()
        }
    )
    assert hub is not None and hub.conversion == BACKBONE and "transformers layout" in hub.description
    with torch.device("meta"):
        base = swin_model(upstream_swin_config(SwinConfig.base_window12()))
    shapes = {hub_key(key): tuple(tensor.shape) for key, tensor in base.state_dict().items()}
    found = detect_checkpoint(shapes)
    assert found is not None and found.conversion == "swin.base_window12"


# -- hostile files ----------------------------------------------------------------------------------


def _refused(name: str, source: Path, out: Path, error: ZooErrorType, match: str) -> ZooError:
    with pytest.raises(error, match=match) as caught:
        convert(name, out=out, source=str(source))
    assert not out.exists(), "nothing may be written"
    return caught.value


def _copy_with(folder: Path, target: Path, change: Callable[[dict[str, torch.Tensor]], object]) -> Path:
    shutil.copytree(folder, target)
    state = load_file(target / "model.safetensors")
    change(state)
    save_file(state, target / "model.safetensors")
    return target


def _pth_with(original_file: Path, target: Path, change: Callable[[dict[str, torch.Tensor]], object]) -> Path:
    state = torch.load(original_file, weights_only=True)["model"]
    change(state)
    torch.save({"model": state}, target)
    return target


def test_a_release_of_another_size_is_refused_naming_both(tmp_path: Path) -> None:
    check = registry.all_conversions()["swin.base"].family_check
    message = check(SwinConfig.tiny())
    assert (
        message is not None
        and "Swin-B (depths (2, 2, 18, 2)" in message
        and "Swin-T (depths (2, 2, 6, 2)" in message
    )
    other = dataclasses.replace(TOY, depths=(2, 2, 4))
    folder = tmp_path / "other"
    _seeded(lambda: swin_model(upstream_swin_config(other))).save_pretrained(folder)  # pyright: ignore[reportCallIssue]
    error = _refused(
        "swin.large_window12", folder, tmp_path / "out", ConfigError, "not a swin.large_window12"
    )
    assert "Swin-L 384" in error.message and "a Swin of depths (2, 2, 4)" in error.message


def test_weights_of_another_size_than_the_config_are_refused(folder: Path, tmp_path: Path) -> None:
    wider = dataclasses.replace(TOY, embed_dim=16)
    mixed = tmp_path / "mixed"
    _seeded(lambda: swin_model(upstream_swin_config(wider))).save_pretrained(mixed)  # pyright: ignore[reportCallIssue]
    shutil.copy(folder / "config.json", mixed / "config.json")
    error = _refused(
        BACKBONE,
        mixed,
        tmp_path / "out",
        CoverageError,
        r"shape \(16,\) in the file, but the config says \(8,\)",
    )
    assert error.tensor == "embeddings.norm.bias" and error.file == str(mixed / "model.safetensors")


@pytest.mark.parametrize(
    ("kind", "match"), [("safetensors", "the file is truncated or corrupt"), ("pth", "damaged zip archive")]
)
def test_a_truncated_file_is_refused(
    folder: Path, original_file: Path, tmp_path: Path, kind: str, match: str
) -> None:
    if kind == "safetensors":
        source = _copy_with(folder, tmp_path / "cut", lambda _state: None)
        weights = source / "model.safetensors"
    else:
        source = weights = tmp_path / "cut.pth"
        shutil.copy(original_file, weights)
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    error = _refused(BACKBONE, source, tmp_path / "out", FormatError, match)
    assert error.file == str(weights)


def test_an_unknown_key_is_refused(folder: Path, original_file: Path, tmp_path: Path) -> None:
    def add(state: dict[str, torch.Tensor]) -> None:
        state["encoder.layers.0.blocks.0.attention.gate.weight"] = torch.zeros(8, 8)

    source = _copy_with(folder, tmp_path / "extra", add)
    _refused(
        BACKBONE,
        source,
        tmp_path / "out",
        FormatError,
        "unknown layout: encoder.layers.0.blocks.0.attention.gate",
    )
    pth = _pth_with(
        original_file,
        tmp_path / "extra.pth",
        lambda s: s.update({"layers.0.blocks.0.attn.gate": torch.zeros(1)}),
    )
    error = _refused(BACKBONE, pth, tmp_path / "out", FormatError, "not a tensor of a Swin backbone")
    assert error.tensor == "layers.0.blocks.0.attn.gate" and error.file == str(pth)


def test_a_missing_tensor_is_refused(original_file: Path, tmp_path: Path) -> None:
    pth = _pth_with(original_file, tmp_path / "short.pth", lambda s: s.pop("layers.1.blocks.1.mlp.fc2.bias"))
    _refused(BACKBONE, pth, tmp_path / "out", CoverageError, "encoder.layers.1.blocks.1.mlp.fc2.bias")


def test_unsupported_variants_are_refused(original_file: Path, folder: Path, tmp_path: Path) -> None:
    ape = _pth_with(
        original_file,
        tmp_path / "ape.pth",
        lambda s: s.update({"absolute_pos_embed": torch.zeros(1, 144, 8)}),
    )
    _refused(BACKBONE, ape, tmp_path / "out", ConfigError, "absolute position embeddings")
    v2 = tmp_path / "v2"
    shutil.copytree(folder, v2)
    (v2 / "config.json").write_text(
        json.dumps({**json.loads((folder / "config.json").read_text()), "model_type": "swinv2"})
    )
    error = _refused(BACKBONE, v2, tmp_path / "out", ConfigError, "model_type='swinv2'")
    assert error.hint == "Swin V2 is not supported yet"


def test_a_file_offered_in_the_wrong_way_says_what_to_do(
    folder: Path, original_file: Path, tmp_path: Path
) -> None:
    _refused(
        "swin.tiny",
        original_file,
        tmp_path / "out",
        ConfigError,
        "swin.tiny cannot be converted from a single file",
    )
    error = _refused(
        BACKBONE, folder / "model.safetensors", tmp_path / "out", ConfigError, "transformers layout"
    )
    assert error.hint is not None and "config.json" in error.hint


def test_the_toy_twin_is_what_every_conversion_writes_synthetically() -> None:
    configs = {c.name: c.derive_config(c.synthetic_configs("tiny")) for c in registry.family("swin").declared}
    assert set(configs.values()) == {TOY}
    model = SwinTransformer(TOY, device="meta")
    assert sum(p.numel() for p in model.parameters()) == 37_048

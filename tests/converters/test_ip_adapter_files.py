"""IP-Adapters from their original files, against diffusers' UNet with the same adapter loaded.

Tiny SD 1.5 and SDXL UNets come from `tiny_converted` (diffusers' model and ours); tiny IP-Adapters are
diffusers' modules with seeded weights, written in the original layouts by our writer and loaded into
diffusers' UNet by diffusers' own loader. Scales 0, 0.5 and 1, with a peft LoRA, and two adapters at once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

import zoo
from converters._convert.by_name import convert
from converters._detect import detect_checkpoint
from converters._verify.parity import relative_error
from converters.ip_adapter import CONVERSIONS
from converters.ip_adapter.convert import convert_ip_adapter
from converters.ip_adapter.original_writer import (
    original_recipes,
    original_state_dicts,
    write_original_bin,
    write_original_file,
)
from converters.ip_adapter.reference import SUBFOLDER, build_reference
from converters.stable_diffusion.unet import UNetExampleInputs, unet_example_inputs
from zoo.cli import main
from zoo.errors import ConfigError, CoverageError
from zoo.foundationals.ip_adapter.ip_adapter import IPAdapter

LIMIT = 1e-5
SCALES = (0.0, 0.5, 1.0)
LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
CASES = [
    ("sd15", "sd15"),
    ("sd15", "sd15_plus"),
    ("sd15", "sd15_vit_g"),
    ("sdxl", "sdxl"),
    ("sdxl", "sdxl_plus_vit_h"),
]


@dataclass(frozen=True)
class Base:
    """A tiny UNet: diffusers' folder and our converted output."""

    unet_folder: Path
    ours: Path


@pytest.fixture(scope="module")
def bases(tiny_converted: Any) -> dict[str, Base]:
    found = {}
    for family in ("sd15", "sdxl"):
        run = tiny_converted(f"{family}.unet")
        found[family] = Base(Path(run.synthetic_source) / "unet", run.results[0].folder)
    return found


def _adapter_folder(folder: Path, variant: str, seed: int) -> Path:
    """A tiny adapter in diffusers' serialisation (seeded), under `folder/<variant>-<seed>`."""
    upstream = CONVERSIONS[variant].synthetic_configs("tiny")[SUBFOLDER]
    torch.manual_seed(seed)
    target = folder / f"{variant}-{seed}"
    build_reference(upstream).save_pretrained(target)  # pyright: ignore[reportCallIssue]
    return target


def _feature(adapter: IPAdapter, seed: int) -> torch.Tensor:
    config, generator = adapter.config, torch.Generator().manual_seed(seed)
    shape = (
        (2, 5, config.image_embedding_dim) if config.reads_hidden_states else (2, config.image_embedding_dim)
    )
    return torch.randn(shape, generator=generator)


def _diffusers_unet(base: Base, adapters: list[Path], lora: bool) -> Any:
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
    from peft import LoraConfig

    unet = UNet2DConditionModel.from_pretrained(base.unet_folder).eval()
    if lora:
        torch.manual_seed(11)
        # alpha = rank: the saved state dict holds no alpha, which zoo then reads as a factor of 1
        config = LoraConfig(r=4, lora_alpha=4, target_modules=LORA_TARGETS, init_lora_weights=False)
        unet.add_adapter(config)  # pyright: ignore[reportCallIssue]
    unet._load_ip_adapter_weights(
        [original_state_dicts(folder) for folder in adapters], low_cpu_mem_usage=False
    )
    return unet


def _run_diffusers(
    unet: Any, inputs: UNetExampleInputs, features: list[torch.Tensor], scales: tuple[float, ...]
) -> torch.Tensor:
    from diffusers.models.attention_processor import IPAdapterAttnProcessor2_0

    for processor in unet.attn_processors.values():
        if isinstance(processor, IPAdapterAttnProcessor2_0):
            processor.scale = list(scales)
    added: dict[str, Any] = {"image_embeds": [feature[:, None] for feature in features]}
    if inputs.pooled_text_embedding is not None:
        added |= {"text_embeds": inputs.pooled_text_embedding, "time_ids": inputs.time_ids}
    with torch.no_grad():
        return unet(
            inputs.latents, inputs.timestep, inputs.text_embedding, added_cond_kwargs=added, return_dict=False
        )[0]


def _lora_weights(unet: Any) -> dict[str, torch.Tensor]:
    from peft.utils import get_peft_model_state_dict

    return {f"unet.{k}": v.detach().clone() for k, v in get_peft_model_state_dict(unet).items()}


def _ours(
    base: Base, adapters: list[Path], out: Path, lora: dict[str, torch.Tensor] | None
) -> tuple[Any, list[IPAdapter]]:
    from converters.lora import load_lora

    unet = zoo.load(base.ours)
    if lora is not None:
        save_file(lora, out / "lora.safetensors")
        load_lora(unet, out / "lora.safetensors", name="lora")
    loaded = []
    for folder in adapters:
        file = write_original_bin(folder, folder.with_suffix(".bin"))
        done = convert_ip_adapter(file, base.ours, out=out / folder.name)
        loaded.append(zoo.load(done.result.folder).inject(unet))
    return unet, loaded


def _run_ours(
    unet: Any,
    adapters: list[IPAdapter],
    inputs: UNetExampleInputs,
    features: list[torch.Tensor],
    scales: tuple[float, ...],
) -> torch.Tensor:
    for adapter, feature, scale in zip(adapters, features, scales, strict=True):
        adapter.scale = scale
        adapter.set_image_embedding(feature)
    with torch.no_grad():
        return inputs.run_target(unet)


def _errors(
    base: Base, variants: list[str], tmp_path: Path, lora: bool, scales: list[tuple[float, ...]]
) -> list[float]:
    folders = [_adapter_folder(tmp_path, variant, seed=20 + i) for i, variant in enumerate(variants)]
    reference = _diffusers_unet(base, folders, lora)
    unet, adapters = _ours(base, folders, tmp_path, _lora_weights(reference) if lora else None)
    inputs = unet_example_inputs(unet.config, batch_size=2)
    features = [_feature(adapter, seed=30 + i) for i, adapter in enumerate(adapters)]
    off, on = (0.0,) * len(adapters), (1.0,) * len(adapters)
    assert not torch.allclose(
        _run_ours(unet, adapters, inputs, features, on), _run_ours(unet, adapters, inputs, features, off)
    )
    return [
        relative_error(
            _run_ours(unet, adapters, inputs, features, s), _run_diffusers(reference, inputs, features, s)
        )
        for s in scales
    ]


@pytest.mark.parametrize(("family", "variant"), CASES, ids=[v for _, v in CASES])
def test_the_unet_with_the_adapter_matches_diffusers(
    bases: dict[str, Base], family: str, variant: str, tmp_path: Path
) -> None:
    errors = _errors(bases[family], [variant], tmp_path, lora=False, scales=[(s,) for s in SCALES])
    print(f"{variant} on {family}: relative errors at scales {SCALES}: {errors}")
    assert max(errors) <= LIMIT


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_with_a_lora_too(bases: dict[str, Base], family: str, tmp_path: Path) -> None:
    variant = "sd15_plus" if family == "sd15" else "sdxl_vit_h"
    errors = _errors(bases[family], [variant], tmp_path, lora=True, scales=[(0.0,), (0.5,)])
    print(f"{variant} + LoRA on {family}: relative errors at scales (0, 0.5): {errors}")
    assert max(errors) <= LIMIT


def test_two_adapters_at_once_match_diffusers(bases: dict[str, Base], tmp_path: Path) -> None:
    errors = _errors(
        bases["sd15"], ["sd15", "sd15_plus"], tmp_path, lora=False, scales=[(0.5, 1.0), (1.0, 0.0)]
    )
    print(f"sd15 + sd15_plus at once: relative errors {errors}")
    assert max(errors) <= LIMIT


# -- files -------------------------------------------------------------------------------------------


def test_original_bin_safetensors_and_diffusers_serialisation_give_the_same_bytes(tmp_path: Path) -> None:
    folder = _adapter_folder(tmp_path, "sd15_plus", seed=1)
    name = CONVERSIONS["sd15_plus"].name
    sources = {
        "bin": write_original_bin(folder, tmp_path / "adapter.bin"),
        "safetensors": write_original_file(folder, tmp_path / "adapter.safetensors"),
        "diffusers": folder,
    }
    digests = {
        kind: convert(name, out=tmp_path / kind, source=str(path)).results[0].sha256
        for kind, path in sources.items()
    }
    assert len(set(digests.values())) == 1, digests


def _cli(*args: str) -> Any:
    return CliRunner().invoke(main, ["convert", "ip-adapter", *args])


def test_an_adapter_for_another_base_is_refused_naming_both(bases: dict[str, Base], tmp_path: Path) -> None:
    file = write_original_file(_adapter_folder(tmp_path, "sd15", seed=2), tmp_path / "sd15.safetensors")
    result = _cli(str(file), "--base", str(bases["sdxl"].ours), "--out", str(tmp_path / "out"))
    assert result.exit_code == 1
    assert (
        "an IP-Adapter for SD 1.5 (its tiny test twin)" in result.stderr
        and "sdxl.unet's UNet has" in result.stderr
    )
    assert not (tmp_path / "out").exists()


def test_a_truncated_file_names_what_is_missing(bases: dict[str, Base], tmp_path: Path) -> None:
    file = write_original_file(_adapter_folder(tmp_path, "sdxl", seed=3), tmp_path / "sdxl.safetensors")
    tensors = load_file(file)
    last = max(int(key.split(".")[1]) for key in tensors if key.startswith("ip_adapter."))
    for kind in ("k", "v"):
        del tensors[f"ip_adapter.{last}.to_{kind}_ip.weight"]
    save_file(tensors, tmp_path / "truncated.safetensors")
    with pytest.raises(CoverageError, match=f"missing, e.g. ip_adapter.{last}.to_k_ip.weight") as caught:
        convert_ip_adapter(tmp_path / "truncated.safetensors", bases["sdxl"].ours, out=tmp_path / "out")
    assert caught.value.hint == "the file is truncated" and not (tmp_path / "out").exists()


def _faceid_like(tmp_path: Path) -> Path:
    tensors = {
        "image_proj.proj.0.weight": torch.zeros(16, 8),
        "image_proj.proj.2.weight": torch.zeros(256, 16),
        "image_proj.norm.weight": torch.zeros(64),
        "ip_adapter.0.to_q_lora.down.weight": torch.zeros(4, 32),
        "ip_adapter.1.to_k_ip.weight": torch.zeros(32, 64),
    }
    save_file(tensors, tmp_path / "faceid.safetensors")
    return tmp_path / "faceid.safetensors"


def test_faceid_and_unknown_variants_are_refused_clearly(bases: dict[str, Base], tmp_path: Path) -> None:
    result = _cli(
        str(_faceid_like(tmp_path)), "--base", str(bases["sd15"].ours), "--out", str(tmp_path / "out")
    )
    assert result.exit_code == 1 and "IP-Adapter FaceID file: not supported yet" in result.stderr
    save_file(
        {"image_proj.odd.weight": torch.zeros(2), "ip_adapter.1.to_k_ip.weight": torch.zeros(2, 2)},
        tmp_path / "odd.safetensors",
    )
    with pytest.raises(ConfigError, match="not an IP-Adapter image projection zoo knows"):
        convert_ip_adapter(tmp_path / "odd.safetensors", "sd15", out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_image_encoder_of_another_width_is_refused(
    bases: dict[str, Base], tiny_converted: Any, tmp_path: Path
) -> None:
    file = write_original_file(
        _adapter_folder(tmp_path, "sdxl_vit_h", seed=4), tmp_path / "vit_h.safetensors"
    )
    encoder = tiny_converted("clip_vision.vit_big_g14").results[0].folder
    args = [
        str(file),
        "--base",
        str(bases["sdxl"].ours),
        "--image-encoder",
        str(encoder),
        "--out",
        str(tmp_path / "o"),
    ]
    result = _cli(*args)
    assert result.exit_code == 1 and "reads projected image embeddings 24 wide" in result.stderr
    assert "gives them 32 wide" in result.stderr and not (tmp_path / "o").exists()


def test_the_command_line_writes_a_manifest_entry(bases: dict[str, Base], tmp_path: Path) -> None:
    file = write_original_bin(_adapter_folder(tmp_path, "sd15", seed=5), tmp_path / "ip.bin")
    dry = _cli(
        str(file), "--base", str(bases["sd15"].ours), "--out", str(tmp_path / "out"), "--dry-run", "--json"
    )
    assert dry.exit_code == 0, dry.stderr
    assert (
        json.loads(dry.stdout)["conversion"] == CONVERSIONS["sd15"].name and not (tmp_path / "out").exists()
    )
    result = _cli(str(file), "--base", str(bases["sd15"].ours), "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.stderr
    entry = json.loads((tmp_path / "out" / "manifest.json").read_text())["conversions"][
        CONVERSIONS["sd15"].name
    ]
    assert entry["sources"][0]["path"].endswith("ip.bin") and entry["sources"][0]["sha256"]
    assert entry["outputs"][0]["sha256"]


# -- recognizing files ---------------------------------------------------------------------------------


def _original_shapes(variant: str, size: str) -> dict[str, tuple[int, ...]]:
    """The shapes of an original file of `variant`, from the reference built on meta (no data)."""
    upstream = CONVERSIONS[variant].synthetic_configs(size)[SUBFOLDER]  # pyright: ignore[reportArgumentType]
    with torch.device("meta"):
        state = build_reference(upstream).state_dict()
    return {
        name: tuple(make([state[key] for key in inputs]).shape)
        for name, (inputs, make) in original_recipes(upstream, list(state)).items()
    }


@pytest.mark.parametrize("variant", list(CONVERSIONS))
def test_inspect_names_the_variant_base_and_encoder_of_full_size_files(variant: str) -> None:
    found = detect_checkpoint(_original_shapes(variant, "full"))
    assert found is not None and found.conversion == CONVERSIONS[variant].name, found
    assert ("SDXL" if "sdxl" in variant else "SD 1.5") in found.description


def test_inspect_says_what_it_does_not_convert(tmp_path: Path) -> None:
    faceid = detect_checkpoint({key: tuple(t.shape) for key, t in load_file(_faceid_like(tmp_path)).items()})
    tiny = detect_checkpoint(_original_shapes("sd15", "tiny"))
    assert faceid is not None and "FaceID" in faceid.description and faceid.conversion is None
    assert tiny is not None and tiny.description == "an IP-Adapter (original layout) of no declared variant"


def test_the_declared_hub_file_converts_from_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hf_cache import add_to_cache  # pyright: ignore[reportMissingImports]
    from huggingface_hub import constants

    from converters.ip_adapter import HUB_REPO
    from zoo.manifest import read_manifest

    home, revision = tmp_path / "hf-home", "c" * 40
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    declared = CONVERSIONS["sd15"]
    pinned = declared.parts[0].pinned
    assert pinned is not None
    file = write_original_file(_adapter_folder(tmp_path, "sd15", seed=6), tmp_path / "adapter.safetensors")
    add_to_cache(home / "hub", HUB_REPO, revision, {pinned.filename: file.read_bytes()})
    convert(declared.name, out=tmp_path / "out", revision=revision)
    entry = read_manifest(tmp_path / "out" / "manifest.json").entries[declared.name]
    assert [(s["kind"], s["file"], s["revision"]) for s in entry["sources"]] == [
        ("hub", pinned.filename, revision)
    ]

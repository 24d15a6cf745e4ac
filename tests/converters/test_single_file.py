"""Original single-file checkpoints: our synthetic SGM / LDM files, read back through diffusers' recorded
conversions, give the pipeline's tensors bit for bit, with configs derived from shapes alone.

Tiny pipelines follow the families' constants that shapes cannot show (head size 64 for SDXL's UNet and
both CLIP towers, 8 heads for SD 1.5's UNet, 32 group-norm groups, SDXL's 256-wide time ids), since
the declared layouts assume them, as the real checkpoints do.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import pytest
import torch
from torch import nn

from converters import sd15, sdxl
from converters._checkpoints import TensorPlan, open_checkpoint, write_safetensors
from converters._convert.sources import SingleFileSource
from converters._single_file.replay import map_single_file, open_single_file_tensors, single_file_configs
from converters.declaration import Conversion, SingleFileLayout, UpstreamPart
from converters.family import Family
from converters.sd15 import original as sd15_original
from converters.sd15.tiny import TINY as SD15_TINY
from converters.sdxl import original as sdxl_original
from converters.sdxl.tiny import TINY as SDXL_TINY
from converters.stable_diffusion.original_writer import original_tensors
from converters.stable_diffusion.tiny import CLIP_COMMON
from zoo.errors import ConfigError, CoverageError

# -- tiny pipelines ---------------------------------------------------------------------------------

TINY = {"sdxl": SDXL_TINY, "sd15": SD15_TINY}
FAMILIES: dict[str, Family] = {"sdxl": sdxl.FAMILY, "sd15": sd15.FAMILY}
ORIGINAL_FILES = {"sdxl": sdxl_original.ORIGINAL_FILE, "sd15": sd15_original.ORIGINAL_FILE}
SD15_AUTOENCODER_LAYOUT = sd15_original.AUTOENCODER_LAYOUT
CONVERSIONS: dict[str, tuple[tuple[str, ...], SingleFileLayout]] = {
    "sdxl.unet": (("unet",), sdxl_original.UNET_LAYOUT),
    "sdxl.text_encoder": (("text_encoder", "text_encoder_2"), sdxl_original.TEXT_ENCODER_LAYOUT),
    "sdxl.autoencoder": (("vae",), sdxl_original.AUTOENCODER_LAYOUT),
    "sd15.unet": (("unet",), sd15_original.UNET_LAYOUT),
    "sd15.text_encoder": (("text_encoder",), sd15_original.TEXT_ENCODER_LAYOUT),
    "sd15.autoencoder": (("vae",), SD15_AUTOENCODER_LAYOUT),
}


def build_upstream(subfolder: str, config: Mapping[str, Any]) -> nn.Module:
    """The diffusers / transformers model of a pipeline component, on the current default device."""
    import diffusers
    import transformers

    if subfolder.startswith("text_encoder"):
        (architecture,) = config["architectures"]
        return getattr(transformers, architecture)(transformers.CLIPTextConfig.from_dict(dict(config)))
    class_name = "UNet2DConditionModel" if subfolder == "unet" else "AutoencoderKL"
    return getattr(diffusers, class_name).from_config(dict(config))


def _unused(*_: object) -> Any:
    raise AssertionError("not used by the single-file path")


def conversion(name: str, layout: SingleFileLayout | None = None) -> Conversion:
    """A test conversion with the parts and layout of `name`; only the single-file path may use it."""
    subfolders, default = CONVERSIONS[name]
    return Conversion(
        name=name,
        description="test",
        hub_repo="test/test",
        license="test",
        parts=tuple(
            UpstreamPart(sub, f"test.{sub}", functools.partial(build_upstream, sub)) for sub in subfolders
        ),
        derive_config=_unused,
        build_target=_unused,
        example_inputs=_unused,
        run_upstream=_unused,
        run_target=_unused,
        overrides=_unused,
        synthetic_configs=_unused,
        single_file=layout or default,
    )


@dataclass(frozen=True)
class TinyPipeline:
    folder: Path
    single_file: Path
    state_dicts: dict[str, dict[str, torch.Tensor]] = field(repr=False)  # subfolder -> saved state dict


def _write_pipeline(family: str, folder: Path) -> TinyPipeline:
    state_dicts: dict[str, dict[str, torch.Tensor]] = {}
    with torch.random.fork_rng():
        for index, (sub, config) in enumerate(TINY[family].items()):
            torch.manual_seed(index)
            model = build_upstream(sub, config)
            model.save_pretrained(folder / sub)  # pyright: ignore[reportCallIssue]
            state_dicts[sub] = {key: value.detach().clone() for key, value in model.state_dict().items()}
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "test"}))
    single_file_format = FAMILIES[family].single_file
    assert single_file_format is not None
    single_file = single_file_format.write_synthetic(folder, folder / f"{family}.safetensors")
    return TinyPipeline(folder, single_file, state_dicts)


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TinyPipeline]:
    return {family: _write_pipeline(family, tmp_path_factory.mktemp(family)) for family in TINY}


def _expected(name: str, pipeline: TinyPipeline) -> dict[str, torch.Tensor]:
    subfolders, _ = CONVERSIONS[name]
    prefix = (lambda sub: f"{sub}.") if len(subfolders) > 1 else (lambda sub: "")
    return {
        prefix(sub) + key: value for sub in subfolders for key, value in pipeline.state_dicts[sub].items()
    }


def _bits(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().contiguous().reshape(-1).view(torch.uint8)


def _with_tensors(
    source: Path,
    target: Path,
    drop: frozenset[str] = frozenset(),
    add: Mapping[str, torch.Tensor] | None = None,
) -> Path:
    """A copy of a safetensors file without some tensors and with others added (streamed)."""
    with open_checkpoint(source) as reader:
        plans = [
            TensorPlan(key, reader.shape(key), reader.dtype(key), functools.partial(reader.get, key))
            for key in reader.keys()
            if key not in drop
        ] + [
            TensorPlan(k, tuple(v.shape), v.dtype, functools.partial(torch.clone, v))
            for k, v in (add or {}).items()
        ]
        write_safetensors(target, plans)
    return target


# -- round trip -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CONVERSIONS))
def test_replayed_tensors_are_the_pipeline_tensors_bit_for_bit(
    name: str, pipelines: dict[str, TinyPipeline]
) -> None:
    pipeline = pipelines[name.split(".")[0]]
    expected = _expected(name, pipeline)
    with open_single_file_tensors(conversion(name), SingleFileSource(pipeline.single_file)) as (_, tensors):
        assert sorted(tensors.tensors) == sorted(expected)
        for key, value in expected.items():
            source = tensors.tensors[key]
            assert (source.shape, source.dtype) == (tuple(value.shape), value.dtype), key
            loaded = tensors.get(key)
            assert (tuple(loaded.shape), loaded.dtype) == (tuple(value.shape), value.dtype), key
            assert torch.equal(_bits(loaded), _bits(value)), key


def test_origins_say_how_each_tensor_is_made(pipelines: dict[str, TinyPipeline]) -> None:
    source = SingleFileSource(pipelines["sdxl"].single_file)
    with open_single_file_tensors(conversion("sdxl.text_encoder"), source) as (_, tensors):
        plain = tensors.tensors["text_encoder.embeddings.token_embedding.weight"]
        query = tensors.tensors["text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj.weight"]
        projection = tensors.tensors["text_encoder_2.text_projection.weight"]
    assert plain.origin == "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight"
    assert "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight" in query.origin
    assert "slice(None, 128, None)" in query.origin
    assert "conditioner.embedders.1.model.text_projection" in projection.origin


@pytest.mark.parametrize(
    ("family", "ignored"),
    [
        (
            "sdxl",
            {
                "conditioner.embedders.0.transformer.text_model.embeddings.position_ids",
                "conditioner.embedders.1.model.logit_scale",
            },
        ),
        ("sd15", {"cond_stage_model.transformer.text_model.embeddings.position_ids"}),
    ],
)
def test_extra_keys_of_real_files_are_ignored_with_reasons(
    family: str, ignored: set[str], pipelines: dict[str, TinyPipeline]
) -> None:
    pipeline = pipelines[family]
    with open_single_file_tensors(
        conversion(f"{family}.text_encoder"), SingleFileSource(pipeline.single_file)
    ) as (
        _,
        tensors,
    ):
        assert {key.split(": ", 1)[1] for key in tensors.ignored} == ignored
        assert all(reason for reason in tensors.ignored.values())


def test_ema_weights_are_ignored_with_the_unet(pipelines: dict[str, TinyPipeline], tmp_path: Path) -> None:
    ema = {"model_ema.diffusion_modelinput_blocks00weight": torch.zeros(32, 4, 3, 3)}
    path = _with_tensors(pipelines["sd15"].single_file, tmp_path / "ema.safetensors", add=ema)
    with open_single_file_tensors(conversion("sd15.unet"), SingleFileSource(path)) as (_, tensors):
        ignored = {key.split(": ", 1)[1] for key in tensors.ignored}
    assert ignored == {"model_ema.decay", "model_ema.num_updates", *ema}


# -- configs ----------------------------------------------------------------------------------------

_PER_LEVEL = ("transformer_layers_per_block", "attention_head_dim")
_NOT_ARCHITECTURE = {
    "sample_size",
    "_class_name",
    "_diffusers_version",
    "_name_or_path",
    "_use_default_values",
}
_CLIP_FIELDS = (
    "architectures",
    "vocab_size",
    "max_position_embeddings",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "layer_norm_eps",
    "projection_dim",
    "bos_token_id",
    "pad_token_id",
    "eos_token_id",
)


def _architecture(subfolder: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The fields that shape the model, as the upstream class resolves them (defaults filled in)."""
    if subfolder.startswith("text_encoder"):
        return {field: config[field] for field in _CLIP_FIELDS}
    with torch.device("meta"):
        model = build_upstream(subfolder, config)
    resolved = dict(cast(Mapping[str, Any], model.config))
    levels = len(resolved["block_out_channels"])
    for name in _PER_LEVEL:
        if name in resolved and isinstance(resolved[name], int):
            resolved[name] = [resolved[name]] * levels
    return {
        key: list(value) if isinstance(value, tuple) else value
        for key, value in resolved.items()
        if key not in _NOT_ARCHITECTURE
    }


@pytest.mark.parametrize("name", list(CONVERSIONS))
def test_configs_derived_from_shapes_are_the_pipeline_configs(
    name: str, pipelines: dict[str, TinyPipeline]
) -> None:
    family = name.split(".")[0]
    configs = single_file_configs(conversion(name), SingleFileSource(pipelines[family].single_file))
    subfolders, _ = CONVERSIONS[name]
    assert sorted(configs) == sorted(subfolders)
    for sub in subfolders:
        assert _architecture(sub, configs[sub]) == _architecture(sub, TINY[family][sub]), sub


def test_family_constants_come_from_the_family(pipelines: dict[str, TinyPipeline]) -> None:
    sdxl = single_file_configs(
        conversion("sdxl.autoencoder"), SingleFileSource(pipelines["sdxl"].single_file)
    )
    sd15 = single_file_configs(
        conversion("sd15.autoencoder"), SingleFileSource(pipelines["sd15"].single_file)
    )
    assert (sdxl["vae"]["scaling_factor"], sd15["vae"]["scaling_factor"]) == (0.13025, 0.18215)


# -- coverage and wrong files -------------------------------------------------------------------------


def test_an_unknown_key_under_a_prefix_is_a_coverage_error(
    pipelines: dict[str, TinyPipeline], tmp_path: Path
) -> None:
    extra = "model.diffusion_model.input_blocks.1.0.extra.weight"
    path = _with_tensors(
        pipelines["sdxl"].single_file, tmp_path / "extra.safetensors", add={extra: torch.zeros(3)}
    )
    with pytest.raises(CoverageError) as error:
        with open_single_file_tensors(conversion("sdxl.unet"), SingleFileSource(path)):
            pass
    assert (error.value.file, error.value.tensor) == (str(path), extra)
    # Other components do not care.
    with open_single_file_tensors(conversion("sdxl.autoencoder"), SingleFileSource(path)):
        pass


def test_a_missing_tensor_is_a_coverage_error(pipelines: dict[str, TinyPipeline], tmp_path: Path) -> None:
    gone = "model.diffusion_model.input_blocks.1.0.in_layers.0.weight"
    path = _with_tensors(
        pipelines["sd15"].single_file, tmp_path / "missing.safetensors", drop=frozenset({gone})
    )
    with pytest.raises(CoverageError) as error:
        with open_single_file_tensors(conversion("sd15.unet"), SingleFileSource(path)):
            pass
    assert error.value.file == str(path)
    assert error.value.tensor == "down_blocks.0.resnets.0.norm1.weight"


def test_a_missing_tensor_the_config_needs_names_it(
    pipelines: dict[str, TinyPipeline], tmp_path: Path
) -> None:
    gone = "conditioner.embedders.1.model.text_projection"
    path = _with_tensors(
        pipelines["sdxl"].single_file, tmp_path / "missing.safetensors", drop=frozenset({gone})
    )
    with pytest.raises(ConfigError) as error:
        single_file_configs(conversion("sdxl.text_encoder"), SingleFileSource(path))
    assert (error.value.file, error.value.tensor) == (str(path), gone)


@pytest.mark.parametrize(
    ("name", "family", "message"),
    [
        ("sdxl.unet", "sd15", "looks like an SD 1.x checkpoint (LDM layout), not an SDXL base checkpoint"),
        (
            "sdxl.text_encoder",
            "sd15",
            "looks like an SD 1.x checkpoint (LDM layout), not an SDXL base checkpoint",
        ),
        (
            "sd15.autoencoder",
            "sdxl",
            "looks like an SDXL base checkpoint (SGM layout), not an SD 1.x checkpoint",
        ),
    ],
)
def test_another_familys_file_is_refused_clearly(
    name: str, family: str, message: str, pipelines: dict[str, TinyPipeline]
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        single_file_configs(conversion(name), SingleFileSource(pipelines[family].single_file))


def test_a_file_without_the_components_keys_says_what_it_looks_like(
    pipelines: dict[str, TinyPipeline],
) -> None:
    unet_file = pipelines["sdxl"].folder / "unet" / "diffusion_pytorch_model.safetensors"
    with pytest.raises(
        ConfigError, match=r"looks like an SDXL UNet \(diffusers layout\), not an SDXL base checkpoint"
    ) as caught:
        single_file_configs(conversion("sdxl.unet"), SingleFileSource(unet_file))
    assert caught.value.hint is not None and "the folder holding it" in caught.value.hint


def test_a_family_shape_rule_broken_is_a_config_error_naming_the_key(
    pipelines: dict[str, TinyPipeline], tmp_path: Path
) -> None:
    # An SGM UNet file without SDXL's added conditioning is not an SDXL UNet.
    drop = {
        "model.diffusion_model.label_emb.0.0.weight",
        "model.diffusion_model.label_emb.0.0.bias",
        "model.diffusion_model.label_emb.0.2.weight",
        "model.diffusion_model.label_emb.0.2.bias",
    }
    path = _with_tensors(
        pipelines["sdxl"].single_file, tmp_path / "no_label.safetensors", drop=frozenset(drop)
    )
    with pytest.raises(ConfigError) as error:
        single_file_configs(conversion("sdxl.unet"), SingleFileSource(path))
    assert error.value.tensor == "model.diffusion_model.label_emb.0.0.weight"


# -- what cannot be recorded ----------------------------------------------------------------------------


def _layout_with(to_upstream: Any) -> SingleFileLayout:
    return replace(SD15_AUTOENCODER_LAYOUT, to_upstream=to_upstream)


def test_data_dependent_upstream_code_is_a_clear_error(pipelines: dict[str, TinyPipeline]) -> None:
    def peeks(tensors: Mapping[str, Any], configs: Any) -> dict[str, Any]:
        return {key: value for key, value in tensors.items() if bool(value.sum() > 0)}

    with pytest.raises(ConfigError, match="reads tensor values"):
        with open_single_file_tensors(
            conversion("sd15.autoencoder", _layout_with(peeks)),
            SingleFileSource(pipelines["sd15"].single_file),
        ):
            pass


def test_a_non_tensor_output_is_a_clear_error(pipelines: dict[str, TinyPipeline]) -> None:
    def counts(tensors: Mapping[str, Any], configs: Any) -> dict[str, Any]:
        return {"encoder.conv_in.weight": len(tensors)}

    with pytest.raises(ConfigError, match="produced int") as error:
        with open_single_file_tensors(
            conversion("sd15.autoencoder", _layout_with(counts)),
            SingleFileSource(pipelines["sd15"].single_file),
        ):
            pass
    assert error.value.file == str(pipelines["sd15"].single_file)


def test_a_tensor_not_from_the_file_is_a_clear_error(pipelines: dict[str, TinyPipeline]) -> None:
    def invents(tensors: Mapping[str, Any], configs: Any) -> dict[str, Any]:
        (key, value), *_ = tensors.items()
        return {key: value + torch.ones(value.shape, device="meta")}

    with pytest.raises(ConfigError, match="does not come from the file"):
        with open_single_file_tensors(
            conversion("sd15.autoencoder", _layout_with(invents)),
            SingleFileSource(pipelines["sd15"].single_file),
        ):
            pass


# -- declared conversions ---------------------------------------------------------------------------------


def _declared() -> Iterator[Conversion]:
    from converters import registry

    # The SD families' layouts, whose pipelines this file builds; test_every_conversion covers every family.
    conversions = registry.all_conversions().values()
    yield from (c for c in conversions if c.single_file is not None and c.family in FAMILIES)


@pytest.mark.parametrize("declared", [pytest.param(c, id=c.name) for c in _declared()])
def test_declared_layouts_round_trip(declared: Conversion, pipelines: dict[str, TinyPipeline]) -> None:
    pipeline = pipelines[declared.family]
    expected = {}
    for part in declared.parts:
        prefix = f"{part.subfolder}." if len(declared.parts) > 1 else ""
        expected |= {prefix + key: value for key, value in pipeline.state_dicts[part.subfolder].items()}
    with open_single_file_tensors(declared, SingleFileSource(pipeline.single_file)) as (_, tensors):
        assert sorted(tensors.tensors) == sorted(expected)
        assert all(torch.equal(_bits(tensors.get(key)), _bits(value)) for key, value in expected.items())


# -- full size, header only -------------------------------------------------------------------------------

SDXL_UNET_FULL = {
    "in_channels": 4,
    "out_channels": 4,
    "sample_size": 128,
    "layers_per_block": 2,
    "block_out_channels": [320, 640, 1280],
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "transformer_layers_per_block": [1, 2, 10],
    "attention_head_dim": [5, 10, 20],
    "cross_attention_dim": 2048,
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "act_fn": "silu",
    "upcast_attention": False,
}
SD15_UNET_FULL = {
    "block_out_channels": [320, 640, 1280, 1280],
    "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
    "attention_head_dim": 8,
    "cross_attention_dim": 768,
    "layers_per_block": 2,
    "sample_size": 64,
    "use_linear_projection": False,
}
CLIP_L_FULL = {
    "architectures": ["CLIPTextModel"],
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "quick_gelu",
    "max_position_embeddings": 77,
    "vocab_size": 49408,
}
BIGG_FULL = {
    "architectures": ["CLIPTextModelWithProjection"],
    "hidden_size": 1280,
    "num_hidden_layers": 32,
    "num_attention_heads": 20,
    "intermediate_size": 5120,
    "hidden_act": "gelu",
    "projection_dim": 1280,
    "max_position_embeddings": 77,
    "vocab_size": 49408,
}
VAE_FULL = {
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "force_upcast": True,
}
FULL: dict[str, dict[str, dict[str, Any]]] = {
    "sdxl": {
        "unet": SDXL_UNET_FULL,
        "text_encoder": CLIP_COMMON | CLIP_L_FULL | {"projection_dim": 768},
        "text_encoder_2": CLIP_COMMON | BIGG_FULL,
        "vae": VAE_FULL | {"scaling_factor": 0.13025, "sample_size": 1024},
    },
    "sd15": {
        "unet": SD15_UNET_FULL,
        "text_encoder": CLIP_COMMON | CLIP_L_FULL | {"projection_dim": 768},
        "vae": VAE_FULL | {"scaling_factor": 0.18215, "sample_size": 512},
    },
}
# MODELS.md: tensors per component in diffusers 0.42 / transformers 5.24 state dicts.
FULL_TENSORS = {"sdxl.unet": 1680, "sdxl.text_encoder": 196 + 517, "sdxl.autoencoder": 248, "sd15.unet": 686}


def full_size_report() -> dict[str, Any]:
    """Maps full-size single-file headers (from models on meta, in float16) without any weights."""
    import resource
    import time

    report: dict[str, Any] = {"conversions": {}}
    for family, configs in FULL.items():
        with torch.device("meta"):
            headers = {
                sub: {
                    k: (tuple(v.shape), torch.float16) for k, v in build_upstream(sub, c).state_dict().items()
                }
                for sub, c in configs.items()
            }
        header = original_tensors(ORIGINAL_FILES[family], headers)
        shapes = {key: tensor.shape for key, tensor in header.items()}
        dtypes = {key: tensor.dtype for key, tensor in header.items()}
        for name in (n for n in CONVERSIONS if n.startswith(f"{family}.")):
            started = time.perf_counter()
            mapped = map_single_file(conversion(name), shapes, dtypes, Path(f"{family}.safetensors"))
            from converters._single_file.replay import check_upstream_names

            check_upstream_names(conversion(name), mapped)
            report["conversions"][name] = {
                "configs": mapped.configs,
                "tensors": len(mapped.recipes),
                "values": sum(torch.Size(plan.shape).numel() for plan in mapped.recipes.values()),
                "seconds": time.perf_counter() - started,
            }
    report["max_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return report


@pytest.fixture(scope="module")
def full_size() -> dict[str, Any]:
    root = Path(__file__).resolve().parents[2]
    environment = os.environ | {"PYTHONPATH": str(root)}
    done = subprocess.run(
        [sys.executable, __file__], capture_output=True, text=True, check=True, cwd=root, env=environment
    )
    return json.loads(done.stdout.splitlines()[-1])


def test_full_size_headers_map_in_little_memory(full_size: dict[str, Any]) -> None:
    # float16 SDXL weights alone are 6.9 GB; the torch + diffusers + transformers import is most of this.
    assert full_size["max_rss_bytes"] < 2 * 1024**3
    counts = {name: full_size["conversions"][name]["tensors"] for name in FULL_TENSORS}
    assert counts == FULL_TENSORS
    assert full_size["conversions"]["sdxl.unet"]["values"] == 2_567_463_684


@pytest.mark.parametrize(
    ("name", "subfolder"),
    [
        ("sdxl.unet", "unet"),
        ("sdxl.text_encoder", "text_encoder"),
        ("sdxl.text_encoder", "text_encoder_2"),
        ("sdxl.autoencoder", "vae"),
        ("sd15.unet", "unet"),
        ("sd15.text_encoder", "text_encoder"),
        ("sd15.autoencoder", "vae"),
    ],
)
def test_full_size_configs_are_the_hub_configs(name: str, subfolder: str, full_size: dict[str, Any]) -> None:
    derived = full_size["conversions"][name]["configs"][subfolder]
    reference = FULL[name.split(".")[0]][subfolder]
    assert {key: derived.get(key) for key in reference} == reference


def test_full_size_configs_give_our_full_size_models(full_size: dict[str, Any]) -> None:
    from converters.stable_diffusion.autoencoder import derive_autoencoder_config
    from converters.stable_diffusion.clip_text import derive_clip_text_config, derive_sdxl_text_encoder_config
    from converters.stable_diffusion.unet import derive_unet_config
    from zoo.foundationals.clip.text_encoder import CLIPTextEncoderConfig
    from zoo.foundationals.latent_diffusion.autoencoder import AutoencoderConfig
    from zoo.foundationals.latent_diffusion.text_encoders import SDXLTextEncoderConfig
    from zoo.foundationals.latent_diffusion.unet import UNetConfig

    configs = {name: result["configs"] for name, result in full_size["conversions"].items()}
    assert derive_unet_config(configs["sdxl.unet"]["unet"]) == UNetConfig.sdxl()
    assert derive_unet_config(configs["sd15.unet"]["unet"]) == UNetConfig.sd15()
    assert derive_sdxl_text_encoder_config(**configs["sdxl.text_encoder"]) == SDXLTextEncoderConfig.sdxl()
    assert (
        derive_clip_text_config(configs["sd15.text_encoder"]["text_encoder"])
        == CLIPTextEncoderConfig.clip_l()
    )
    assert derive_autoencoder_config(configs["sdxl.autoencoder"]["vae"]) == AutoencoderConfig.sdxl()
    assert derive_autoencoder_config(configs["sd15.autoencoder"]["vae"]) == AutoencoderConfig.sd15()


if __name__ == "__main__":
    print(json.dumps(full_size_report()))


# -- end to end ----------------------------------------------------------------------------------------


def test_converting_the_single_file_writes_the_same_bytes_as_the_folder(
    pipelines: dict[str, TinyPipeline], tmp_path: Path
) -> None:
    from converters._convert.component import convert_component
    from converters._convert.sources import resolve_source

    declared = replace(sd15.AUTOENCODER, single_file=SD15_AUTOENCODER_LAYOUT)
    pipeline = pipelines["sd15"]
    from_file = convert_component(declared, SingleFileSource(pipeline.single_file), tmp_path / "file")
    from_folder = convert_component(declared, resolve_source(declared, pipeline.folder), tmp_path / "folder")
    assert (from_file.sha256, from_file.tensors) == (from_folder.sha256, from_folder.tensors)
    config = Path(declared.name, "config.json")
    assert (tmp_path / "file" / config).read_bytes() == (tmp_path / "folder" / config).read_bytes()

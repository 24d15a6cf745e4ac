"""Write an original single-file checkpoint (SGM or LDM layout) from a diffusers pipeline.

Real single files are gigabytes; tests and the quick start need small ones laid out exactly like them.
This module holds our own diffusers -> original key mapping, written independently of diffusers'
original -> diffusers conversion that `converters._single_file` replays, so a round trip checks both.
The file also holds the extra keys real files have and conversions must ignore (`position_ids`, EMA
bookkeeping, OpenCLIP's `logit_scale`, SD 1.x's noise schedule buffers).

Tensors are streamed through our writer, one at a time, from the pipeline's memory-mapped files.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import torch

from converters._checkpoints import CheckpointReader, TensorPlan, open_checkpoint, write_safetensors
from converters.declaration import Shape
from converters.stable_diffusion.autoencoder import normalize_vae_keys
from zoo.errors import FormatError
from zoo.hub import WEIGHT_NAMES

Header = Mapping[str, tuple[Shape, torch.dtype]]  # a pipeline component's key -> (shape, dtype)


@dataclass(frozen=True)
class OriginalTensor:
    """One tensor of the original file, described before it exists.

    Attributes:
        shape: Its shape in the original file.
        dtype: Its dtype.
        inputs: (subfolder, key) of the pipeline tensors it is made from, in the order `make` takes them.
        make: The pipeline tensors -> the original tensor.
    """

    shape: Shape
    dtype: torch.dtype
    inputs: tuple[tuple[str, str], ...]
    make: Callable[[list[torch.Tensor]], torch.Tensor]


PartTensors = Callable[[str, Header], dict[str, OriginalTensor]]  # (subfolder, header) -> tensors


@dataclass(frozen=True)
class OriginalFile:
    """Where a family's pipeline parts sit in its original single file.

    Attributes:
        description: What the file is, for its metadata ("SDXL base (SGM layout)").
        parts: Pipeline subfolder -> (key prefix in the file, the function naming its tensors there:
            `unet_tensors`, `vae_tensors`, `clip_tensors` or `open_clip_tensors`).
        extras: The pipeline's headers -> keys real files hold besides the weights (position ids, EMA
            bookkeeping, noise schedules), which conversions must ignore.
    """

    description: str
    parts: Mapping[str, tuple[str, PartTensors]]
    extras: Callable[[Mapping[str, Header]], dict[str, OriginalTensor]]


def write_original_file(layout: OriginalFile, pipeline_folder: Path, out_file: Path) -> Path:
    """Write `out_file`: the pipeline's parts as one original single file laid out as `layout` says.

    Args:
        layout: The family's original file.
        pipeline_folder: A diffusers pipeline folder as `save_pretrained` writes it (`model_index.json`
            and a folder per part).
        out_file: The safetensors file to write (replaced atomically).

    Raises:
        FormatError: The folder is not such a pipeline, or holds a tensor the mapping does not know.
    """
    if not (pipeline_folder / "model_index.json").is_file():
        raise FormatError("not a diffusers pipeline folder (no model_index.json)", file=pipeline_folder)
    with ExitStack() as stack:
        readers = {
            sub: stack.enter_context(open_checkpoint(_weights_file(pipeline_folder / sub)))
            for sub in layout.parts
        }
        headers = {sub: {key: (r.shape(key), r.dtype(key)) for key in r.keys()} for sub, r in readers.items()}
        plans = [
            TensorPlan(name, tensor.shape, tensor.dtype, _producer(tensor, readers))
            for name, tensor in original_tensors(layout, headers).items()
        ]
        write_safetensors(
            out_file, plans, {"zoo.synthetic": f"{layout.description}, from {pipeline_folder.name}"}
        )
    return out_file


def original_tensors(layout: OriginalFile, headers: Mapping[str, Header]) -> dict[str, OriginalTensor]:
    """Every tensor of the original file, from the pipeline components' headers (subfolder -> header)."""
    tensors: dict[str, OriginalTensor] = {}
    for sub, (prefix, part_tensors) in layout.parts.items():
        if sub not in headers:
            raise FormatError(f"the pipeline has no {sub} component, which {layout.description} holds")
        for key, tensor in part_tensors(sub, headers[sub]).items():
            tensors[prefix + key] = tensor
    return tensors | layout.extras(headers)


# -- helpers ----------------------------------------------------------------------------------------


def _weights_file(folder: Path) -> Path:
    for name in WEIGHT_NAMES:
        for candidate in (folder / name, folder / f"{name}.index.json"):
            if candidate.is_file():
                return candidate
    raise FormatError(f"no weights file ({' or '.join(WEIGHT_NAMES)}, or a shard index)", file=folder)


def _producer(tensor: OriginalTensor, readers: Mapping[str, CheckpointReader]) -> Callable[[], torch.Tensor]:
    return lambda: tensor.make([readers[sub].get(key) for sub, key in tensor.inputs])


def _first(tensors: list[torch.Tensor]) -> torch.Tensor:
    return tensors[0]


def _copy(sub: str, key: str, header: Header) -> OriginalTensor:
    shape, dtype = header[key]
    return OriginalTensor(tuple(shape), dtype, ((sub, key),), _first)


def _reshaped(sub: str, key: str, header: Header, shape: Shape) -> OriginalTensor:
    _, dtype = header[key]
    return OriginalTensor(shape, dtype, ((sub, key),), lambda tensors: tensors[0].reshape(shape))


def constant_tensor(shape: Shape, dtype: torch.dtype, make: Callable[[], torch.Tensor]) -> OriginalTensor:
    return OriginalTensor(shape, dtype, (), lambda _: make())


def _unknown(sub: str, key: str) -> FormatError:
    return FormatError(f"{sub}: a tensor the original single-file layout has no place for", tensor=key)


def _count(header: Header, pattern: str) -> int:
    regex = re.compile(pattern)
    return len({m[1] for key in header if (m := regex.match(key))})


# -- UNet: diffusers UNet2DConditionModel -> LDM/SGM `model.diffusion_model.*` -----------------------

_UNET_TOP = {
    "conv_in": "input_blocks.0.0",
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
_UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
_UNET_BLOCK = re.compile(r"(down|up)_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)")
_UNET_SAMPLER = re.compile(r"(down|up)_blocks\.(\d+)\.(?:down|up)samplers\.0\.conv\.(\w+)")
_UNET_MID = re.compile(r"mid_block\.(resnets|attentions)\.(\d+)\.(.+)")


@dataclass(frozen=True)
class _UNetShape:
    layers_per_block: int
    up_attention: frozenset[int]  # up levels with attention (their upsampler comes third)


def unet_tensors(sub: str, header: Header) -> dict[str, OriginalTensor]:
    shape = _UNetShape(
        _count(header, r"down_blocks\.0\.resnets\.(\d+)\."),
        frozenset(int(m[1]) for key in header if (m := re.match(r"up_blocks\.(\d+)\.attentions\.", key))),
    )
    return {_unet_key(sub, key, shape): _copy(sub, key, header) for key in header}


def _unet_resnet(sub: str, key: str, rest: str) -> str:
    name, _, parameter = rest.partition(".")
    if name not in _UNET_RESNET:
        raise _unknown(sub, key)
    return f"{_UNET_RESNET[name]}.{parameter}"


def _unet_key(sub: str, key: str, shape: _UNetShape) -> str:
    module, _, parameter = key.rpartition(".")
    span = shape.layers_per_block + 1  # original blocks per level: residual blocks + a resampler
    if module in _UNET_TOP:
        return f"{_UNET_TOP[module]}.{parameter}"
    if match := _UNET_BLOCK.fullmatch(key):
        side, level, kind, index, rest = match[1], int(match[2]), match[3], int(match[4]), match[5]
        block = (
            f"input_blocks.{1 + level * span + index}"
            if side == "down"
            else f"output_blocks.{level * span + index}"
        )
        return f"{block}.0.{_unet_resnet(sub, key, rest)}" if kind == "resnets" else f"{block}.1.{rest}"
    if match := _UNET_SAMPLER.fullmatch(key):
        level, parameter = int(match[2]), match[3]
        if match[1] == "down":
            return f"input_blocks.{1 + level * span + shape.layers_per_block}.0.op.{parameter}"
        position = 2 if level in shape.up_attention else 1
        return f"output_blocks.{level * span + shape.layers_per_block}.{position}.conv.{parameter}"
    if match := _UNET_MID.fullmatch(key):
        if match[1] == "attentions":
            return f"middle_block.1.{match[3]}"
        return f"middle_block.{2 * int(match[2])}.{_unet_resnet(sub, key, match[3])}"
    raise _unknown(sub, key)


# -- VAE: diffusers AutoencoderKL -> LDM `first_stage_model.*` ----------------------------------------

_VAE_RESNET = {
    "norm1": "norm1",
    "conv1": "conv1",
    "norm2": "norm2",
    "conv2": "conv2",
    "conv_shortcut": "nin_shortcut",
}
_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
_VAE_SAME = re.compile(r"(?:encoder\.|decoder\.)?(?:conv_in|conv_out|quant_conv|post_quant_conv)\.\w+")
_VAE_BLOCK = re.compile(r"(encoder\.down|decoder\.up)_blocks\.(\d+)\.resnets\.(\d+)\.(\w+)\.(\w+)")
_VAE_SAMPLER = re.compile(r"(encoder\.down|decoder\.up)_blocks\.(\d+)\.(down|up)samplers\.0\.conv\.(\w+)")
_VAE_MID = re.compile(
    r"(encoder|decoder)\.mid_block\.(?:resnets\.(\d+)\.(\w+)|attentions\.0\.(\w+|to_out\.0))\.(\w+)"
)
_VAE_NORM_OUT = re.compile(r"(encoder|decoder)\.conv_norm_out\.(\w+)")


def vae_tensors(sub: str, header: Header) -> dict[str, OriginalTensor]:
    """Accepts current and deprecated (`query`/`key`/`value`/`proj_attn`) diffusers names."""
    normalized = normalize_vae_keys({key: shape for key, (shape, _) in header.items()})
    levels = 1 + max(
        (int(m[1]) for n in normalized.values() if (m := re.match(r"decoder\.up_blocks\.(\d+)\.", n.key))),
        default=-1,
    )
    tensors: dict[str, OriginalTensor] = {}
    for file_key, (key, shape) in normalized.items():
        original, convolution = _vae_key(sub, key, levels)
        target = (*shape, 1, 1) if convolution and len(shape) == 2 else tuple(shape)
        tensors[original] = _reshaped(sub, file_key, header, target)
    return tensors


def _vae_key(sub: str, key: str, levels: int) -> tuple[str, bool]:
    """The original name, and whether the original holds it as a 1×1 convolution (mid-block attention)."""
    if _VAE_SAME.fullmatch(key):
        return key, False
    if match := _VAE_BLOCK.fullmatch(key):
        side, level, index, name, parameter = match[1], int(match[2]), match[3], match[4], match[5]
        if name not in _VAE_RESNET:
            raise _unknown(sub, key)
        level = level if side == "encoder.down" else levels - 1 - level  # LDM counts decoder levels upwards
        return f"{side}.{level}.block.{index}.{_VAE_RESNET[name]}.{parameter}", False
    if match := _VAE_SAMPLER.fullmatch(key):
        side, level, kind, parameter = match[1], int(match[2]), match[3], match[4]
        level = level if side == "encoder.down" else levels - 1 - level
        return f"{side}.{level}.{kind}sample.conv.{parameter}", False
    if match := _VAE_MID.fullmatch(key):
        half, resnet, name, attention, parameter = match[1], match[2], match[3], match[4], match[5]
        if resnet is not None and name in _VAE_RESNET:
            return f"{half}.mid.block_{int(resnet) + 1}.{_VAE_RESNET[name]}.{parameter}", False
        if attention in _VAE_ATTENTION:
            return f"{half}.mid.attn_1.{_VAE_ATTENTION[attention]}.{parameter}", attention != "group_norm"
    if match := _VAE_NORM_OUT.fullmatch(key):
        return f"{match[1]}.norm_out.{match[2]}", False
    raise _unknown(sub, key)


# -- CLIP-L: transformers names, always under `text_model.` -------------------------------------------


def clip_tensors(sub: str, header: Header) -> dict[str, OriginalTensor]:
    """transformers 5 saves `CLIPTextModel` without the `text_model.` prefix; original files have it."""
    tensors: dict[str, OriginalTensor] = {}
    for key in header:
        name = key if key.startswith("text_model.") else f"text_model.{key}"
        if name.endswith("position_ids"):
            continue  # written by `_extras`, as the original files hold it
        tensors[name] = _copy(sub, key, header)
    return tensors


# -- OpenCLIP bigG: fused attention projections, transposed text projection --------------------------

_OPEN_CLIP_TOP = {
    "embeddings.token_embedding.weight": "token_embedding.weight",
    "embeddings.position_embedding.weight": "positional_embedding",
    "final_layer_norm.weight": "ln_final.weight",
    "final_layer_norm.bias": "ln_final.bias",
}
_OPEN_CLIP_LAYER = {
    "self_attn.out_proj": "attn.out_proj",
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
}
_OPEN_CLIP_KEY = re.compile(r"encoder\.layers\.(\d+)\.(.+)\.(weight|bias)")
_QKV = re.compile(r"self_attn\.(q|k|v)_proj")


def open_clip_tensors(sub: str, header: Header) -> dict[str, OriginalTensor]:
    tensors: dict[str, OriginalTensor] = {}
    fused: dict[str, dict[str, str]] = {}  # original in_proj name -> {"q": key, "k": key, "v": key}
    for key in header:
        if key == "text_projection.weight":
            (projection, width), dtype = header[key]
            tensors["text_projection"] = OriginalTensor(
                (width, projection), dtype, ((sub, key),), lambda t: t[0].T
            )
            continue
        name = key.removeprefix("text_model.")
        if name in _OPEN_CLIP_TOP:
            tensors[_OPEN_CLIP_TOP[name]] = _copy(sub, key, header)
        elif (match := _OPEN_CLIP_KEY.fullmatch(name)) and (qkv := _QKV.fullmatch(match[2])):
            fused.setdefault(f"transformer.resblocks.{match[1]}.attn.in_proj_{match[3]}", {})[qkv[1]] = key
        elif match and match[2] in _OPEN_CLIP_LAYER:
            tensors[f"transformer.resblocks.{match[1]}.{_OPEN_CLIP_LAYER[match[2]]}.{match[3]}"] = _copy(
                sub, key, header
            )
        elif not name.endswith("position_ids"):
            raise _unknown(sub, key)
    return tensors | {name: _fuse(sub, parts, header) for name, parts in fused.items()}


def _fuse(sub: str, parts: Mapping[str, str], header: Header) -> OriginalTensor:
    if set(parts) != {"q", "k", "v"}:
        raise FormatError(
            f"{sub}: attention projections without all of q, k and v", tensor=next(iter(parts.values()))
        )
    keys = [parts[name] for name in ("q", "k", "v")]
    (rows, *rest), dtype = header[keys[0]]
    return OriginalTensor(
        (3 * rows, *rest), dtype, tuple((sub, key) for key in keys), lambda t: torch.cat(t, 0)
    )


# -- keys real files hold besides the weights ---------------------------------------------------------


def clip_position_ids(header: Header) -> OriginalTensor:
    """The `position_ids` buffer original files hold for a CLIP text tower (0..positions-1)."""
    key = next(key for key in header if key.endswith("embeddings.position_embedding.weight"))
    (positions, _), _ = header[key]
    return constant_tensor((1, positions), torch.int64, lambda: torch.arange(positions).unsqueeze(0))


__all__ = [
    "Header",
    "OriginalFile",
    "OriginalTensor",
    "clip_position_ids",
    "clip_tensors",
    "constant_tensor",
    "open_clip_tensors",
    "original_tensors",
    "unet_tensors",
    "vae_tensors",
    "write_original_file",
]

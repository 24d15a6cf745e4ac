"""Meta's original checkpoints (`sam_vit_b_01ec64.pth`, `sam_vit_l_0b3195.pth`, `sam_vit_h_4b8939.pth`):
a plain state dict of the `segment_anything` package's `Sam`, keys `image_encoder.*`, `prompt_encoder.*`,
`mask_decoder.*`.

Their names map onto transformers' `SamModel` by renaming alone (`image_encoder.blocks.3.norm1` is
`vision_encoder.layers.3.layer_norm1`; `output_upscaling.0` is `upscale_conv1`; a three-layer MLP's
`layers.0/1/2` are `proj_in`, `layers.0`, `proj_out`), and the config comes from the shapes: width and
patch from the patch embedding, image size from the absolute positions, depth from the block count,
head width and the global-attention blocks from the relative-position tables (a global block's spans
the whole map, a windowed block's one window, whose size it gives), decoder sizes likewise. The mask
decoder's number of heads is the one number the shapes do not show: every release has 8.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from converters._single_file.shapes import ShapeReader
from converters.declaration import SingleFileLayout, UpstreamConfigs
from converters.family import Recognizer, Shapes
from converters.sam.configs import FIXED
from zoo.errors import CoverageError, few

SUBFOLDER = "sam"
DECODER_HEADS = 8  # every release; the shapes cannot tell
ORIGINAL_DECODER_NORM_EPS = 1e-5  # the original two-way blocks' nn.LayerNorm default
HQ_MARKER = "mask_decoder.hf_token.weight"
IGNORED = {
    "pixel_mean": "the image normalisation constants, a non-persistent buffer of the original Sam",
    "pixel_std": "the image normalisation constants, a non-persistent buffer of the original Sam",
}

# -- names --------------------------------------------------------------------------------------------

_BLOCK_PARTS = {"norm1": "layer_norm1", "norm2": "layer_norm2", "attn": "attn", "mlp": "mlp"}
_NECK = {"0": "conv1", "1": "layer_norm1", "2": "conv2", "3": "layer_norm2"}
_MASK_DOWNSCALING = {"0": "conv1", "1": "layer_norm1", "3": "conv2", "4": "layer_norm2", "6": "conv3"}
_UPSCALING = {"0": "upscale_conv1", "1": "upscale_layer_norm", "3": "upscale_conv2"}
_SAME = (
    r"prompt_encoder\.(not_a_point_embed|no_mask_embed)\.weight",
    r"mask_decoder\.(iou_token|mask_tokens)\.weight",
    r"mask_decoder\.transformer\.(layers\.\d+\.(self_attn|cross_attn_token_to_image|cross_attn_image_to_token)"
    r"\.(q|k|v|out)_proj|layers\.\d+\.mlp\.lin[12]|final_attn_token_to_image\.(q|k|v|out)_proj)\.(weight|bias)",
)


def _perceptron(index: str, depth: int) -> str:
    """A `layers.i` of an original MLP → transformers' `SamFeedForward` name."""
    position = int(index)
    if position == 0:
        return "proj_in"
    return "proj_out" if position == depth - 1 else f"layers.{position - 1}"


def _rules(depths: Mapping[str, int]) -> list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]]:
    hyper, iou = depths["hypernetwork"], depths["iou_head"]
    rules: list[tuple[str, Callable[[re.Match[str]], str]]] = [
        (r"image_encoder\.pos_embed", lambda m: "vision_encoder.pos_embed"),
        (
            r"image_encoder\.patch_embed\.proj\.(\w+)",
            lambda m: f"vision_encoder.patch_embed.projection.{m[1]}",
        ),
        (
            r"image_encoder\.blocks\.(\d+)\.(norm1|norm2|attn|mlp)\.(.+)",
            lambda m: f"vision_encoder.layers.{m[1]}.{_BLOCK_PARTS[m[2]]}.{m[3]}",
        ),
        (r"image_encoder\.neck\.([0-3])\.(\w+)", lambda m: f"vision_encoder.neck.{_NECK[m[1]]}.{m[2]}"),
        (
            r"prompt_encoder\.pe_layer\.positional_encoding_gaussian_matrix",
            lambda m: "shared_image_embedding.positional_embedding",
        ),
        (
            r"prompt_encoder\.point_embeddings\.(\d+)\.weight",
            lambda m: f"prompt_encoder.point_embed.{m[1]}.weight",
        ),
        (
            r"prompt_encoder\.mask_downscaling\.([01346])\.(\w+)",
            lambda m: f"prompt_encoder.mask_embed.{_MASK_DOWNSCALING[m[1]]}.{m[2]}",
        ),
        (
            r"mask_decoder\.transformer\.layers\.(\d+)\.norm([1-4])\.(\w+)",
            lambda m: f"mask_decoder.transformer.layers.{m[1]}.layer_norm{m[2]}.{m[3]}",
        ),
        (
            r"mask_decoder\.transformer\.norm_final_attn\.(\w+)",
            lambda m: f"mask_decoder.transformer.layer_norm_final_attn.{m[1]}",
        ),
        (
            r"mask_decoder\.output_upscaling\.([013])\.(\w+)",
            lambda m: f"mask_decoder.{_UPSCALING[m[1]]}.{m[2]}",
        ),
        (
            r"mask_decoder\.output_hypernetworks_mlps\.(\d+)\.layers\.(\d+)\.(\w+)",
            lambda m: f"mask_decoder.output_hypernetworks_mlps.{m[1]}.{_perceptron(m[2], hyper)}.{m[3]}",
        ),
        (
            r"mask_decoder\.iou_prediction_head\.layers\.(\d+)\.(\w+)",
            lambda m: f"mask_decoder.iou_prediction_head.{_perceptron(m[1], iou)}.{m[2]}",
        ),
        *((pattern, lambda m: m[0]) for pattern in _SAME),
    ]
    return [(re.compile(pattern), rename) for pattern, rename in rules]


def transformers_names(keys: Iterable[str], depths: Mapping[str, int]) -> dict[str, str]:
    """Original key → transformers `SamModel` key, for every key; an unknown key is an error.

    Args:
        keys: The original checkpoint's keys (ignored ones left out).
        depths: Layer counts of the hypernetworks and the IoU head (`hypernetwork`, `iou_head`), which
            decide where `proj_out` is.
    """
    rules = _rules(depths)
    names: dict[str, str] = {}
    unknown: list[str] = []
    for key in keys:
        rename = next((rename(match) for pattern, rename in rules if (match := pattern.fullmatch(key))), None)
        if rename is None:
            unknown.append(key)
        else:
            names[key] = rename
    if unknown:
        raise CoverageError(
            f"{len(unknown)} tensor(s) no original Segment Anything checkpoint has: {few(sorted(unknown))}",
            tensor=sorted(unknown)[0],
            hint="is this a fine-tune with extra modules, or another model's checkpoint?",
        )
    return names


# -- config from shapes ---------------------------------------------------------------------------------


def _depth(reader: ShapeReader, pattern: str) -> int:
    count = reader.count(pattern)
    if count == 0:
        raise reader.fail(
            pattern.replace(r"(\d+)", "0").replace("\\", ""), "missing, and every such checkpoint has it"
        )
    return count


def _vision_config(shapes: Shapes) -> dict[str, Any]:
    encoder = ShapeReader(shapes, "image_encoder.", "Segment Anything image encoder")
    width, channels, patch, _ = encoder("patch_embed.proj.weight")
    grid = encoder("pos_embed")[1]
    depth = _depth(encoder, r"blocks\.(\d+)\.")
    tables = [encoder(f"blocks.{index}.attn.rel_pos_h") for index in range(depth)]
    global_blocks = [index for index, table in enumerate(tables) if table[0] == 2 * grid - 1]
    windows = sorted(
        {(table[0] + 1) // 2 for index, table in enumerate(tables) if index not in global_blocks}
    )
    if len(windows) > 1:
        raise encoder.fail("blocks.0.attn.rel_pos_h", f"windowed blocks of several sizes {windows}")
    return {
        "hidden_size": width,
        "output_channels": encoder("neck.0.weight")[0],
        "num_hidden_layers": depth,
        "num_attention_heads": width // tables[0][1],
        "num_channels": channels,
        "image_size": grid * patch,
        "patch_size": patch,
        "qkv_bias": encoder.has("blocks.0.attn.qkv.bias"),
        "window_size": windows[0] if windows else grid,
        "global_attn_indexes": global_blocks,
        "mlp_dim": encoder("blocks.0.mlp.lin1.weight")[0],
    }


def _prompt_config(shapes: Shapes, vision: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
    prompt = ShapeReader(shapes, "prompt_encoder.", "Segment Anything prompt encoder")
    features = prompt("pe_layer.positional_encoding_gaussian_matrix")[1]
    config = {
        "hidden_size": prompt("no_mask_embed.weight")[1],
        "image_size": vision["image_size"],
        "patch_size": vision["patch_size"],
        "mask_input_channels": prompt("mask_downscaling.3.weight")[0],
    }
    return config, features


def _decoder_config(shapes: Shapes) -> tuple[dict[str, Any], dict[str, int]]:
    decoder = ShapeReader(shapes, "mask_decoder.", "Segment Anything mask decoder")
    width = decoder("iou_token.weight")[1]
    depths = {
        "hypernetwork": _depth(decoder, r"output_hypernetworks_mlps\.0\.layers\.(\d+)\."),
        "iou_head": _depth(decoder, r"iou_prediction_head\.layers\.(\d+)\."),
    }
    config = {
        "hidden_size": width,
        "mlp_dim": decoder("transformer.layers.0.mlp.lin1.weight")[0],
        "num_hidden_layers": _depth(decoder, r"transformer\.layers\.(\d+)\."),
        "num_attention_heads": DECODER_HEADS,
        "attention_downsample_rate": width
        // decoder("transformer.layers.0.cross_attn_token_to_image.q_proj.weight")[0],
        "num_multimask_outputs": decoder("mask_tokens.weight")[0] - 1,
        "iou_head_depth": depths["iou_head"],
        "iou_head_hidden_dim": decoder("iou_prediction_head.layers.0.weight")[0],
        "layer_norm_eps": ORIGINAL_DECODER_NORM_EPS,
    }
    return config, depths


def upstream_configs(shapes: Shapes) -> dict[str, dict[str, Any]]:
    """The transformers `SamConfig` that holds an original checkpoint's weights, from its shapes."""
    vision = _vision_config(shapes)
    prompt, features = _prompt_config(shapes, vision)
    decoder, depths = _decoder_config(shapes)
    if depths["hypernetwork"] != FIXED["hypernetwork_depth"]:
        raise ShapeReader(shapes, "mask_decoder.", "Segment Anything mask decoder").fail(
            "output_hypernetworks_mlps.0.layers.0.weight",
            f"{depths['hypernetwork']}-layer hypernetworks; every release (and transformers) has "
            f"{FIXED['hypernetwork_depth']}",
        )
    vision["num_pos_feats"] = features
    return {
        SUBFOLDER: {"vision_config": vision, "prompt_encoder_config": prompt, "mask_decoder_config": decoder}
    }


def depths_of(configs: UpstreamConfigs) -> dict[str, int]:
    """The MLP depths that place `proj_out` (transformers always builds 3-layer hypernetworks)."""
    decoder = configs[SUBFOLDER]["mask_decoder_config"]
    return {"hypernetwork": FIXED["hypernetwork_depth"], "iou_head": int(decoder["iou_head_depth"])}


def to_transformers(tensors: Mapping[str, Any], configs: UpstreamConfigs) -> dict[str, Any]:
    """Original tensors → transformers `SamModel` tensors (renamed; run on recorded tensors)."""
    names = transformers_names(tensors, depths_of(configs))
    return {names[key]: tensor for key, tensor in tensors.items()}


LAYOUT = SingleFileLayout(
    prefixes=("",),  # every key of the file is SAM's: a stray one is an error, not someone else's
    to_upstream=to_transformers,
    upstream_configs=upstream_configs,
    ignored=IGNORED,
)

# -- recognising and writing ---------------------------------------------------------------------------


def is_original_sam(shapes: Shapes) -> bool:
    """An original Segment Anything checkpoint (not HQ-SAM's, which adds modules to the decoder)."""
    return (
        "image_encoder.patch_embed.proj.weight" in shapes
        and "mask_decoder.iou_token.weight" in shapes
        and HQ_MARKER not in shapes
    )


RECOGNIZER_DESCRIPTION = "an original Segment Anything checkpoint (segment_anything layout; `zoo convert sam --source FILE` converts it)"


RECOGNIZER = Recognizer(RECOGNIZER_DESCRIPTION, is_original_sam)


__all__ = [
    "LAYOUT",
    "RECOGNIZER",
    "RECOGNIZER_DESCRIPTION",
    "SUBFOLDER",
    "depths_of",
    "is_original_sam",
    "to_transformers",
    "transformers_names",
    "upstream_configs",
]

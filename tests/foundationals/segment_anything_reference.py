"""The references of the Segment Anything tests: Meta's `segment_anything` and SysCV's
`segment_anything_hq` packages, built with the same (tiny) config as ours and seeded random weights, and
their original checkpoints written as the releases are (`torch.save(sam.state_dict())`)."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

import zoo
from converters._convert.by_name import convert
from zoo.foundationals.segment_anything.model import SegmentAnything, SegmentAnythingConfig

TINY = SegmentAnythingConfig.tiny()


def _parts(config: SegmentAnythingConfig, modeling: Any) -> dict[str, Any]:
    """The image and prompt encoders of an upstream `modeling` package, for our config."""
    encoder, prompt = config.image_encoder, config.prompt_encoder
    image_encoder = modeling.ImageEncoderViT(
        img_size=encoder.image_size,
        patch_size=encoder.patch_size,
        in_chans=encoder.in_channels,
        embed_dim=encoder.embed_dim,
        depth=encoder.depth,
        num_heads=encoder.num_heads,
        mlp_ratio=encoder.mlp_dim / encoder.embed_dim,
        out_chans=encoder.out_channels,
        qkv_bias=encoder.qkv_bias,
        norm_layer=partial(nn.LayerNorm, eps=encoder.layer_norm_eps),
        use_rel_pos=True,
        window_size=encoder.window_size,
        global_attn_indexes=encoder.global_attention_blocks,
    )
    prompt_encoder = modeling.PromptEncoder(
        embed_dim=prompt.embed_dim,
        image_embedding_size=(prompt.embedding_size, prompt.embedding_size),
        input_image_size=(prompt.image_size, prompt.image_size),
        mask_in_chans=prompt.mask_channels,
    )
    return {"image_encoder": image_encoder, "prompt_encoder": prompt_encoder}


def _decoder_arguments(config: SegmentAnythingConfig, modeling: Any) -> dict[str, Any]:
    decoder = config.mask_decoder
    transformer = modeling.TwoWayTransformer(
        depth=decoder.depth,
        embedding_dim=decoder.embed_dim,
        mlp_dim=decoder.mlp_dim,
        num_heads=decoder.num_heads,
    )
    return {
        "num_multimask_outputs": decoder.num_multimask_outputs,
        "transformer": transformer,
        "transformer_dim": decoder.embed_dim,
        "iou_head_depth": decoder.iou_head_depth,
        "iou_head_hidden_dim": decoder.iou_head_hidden_dim,
    }


def randomize(module: nn.Module, seed: int) -> None:
    """Seeded random weights everywhere (upstream zero-initialises the position tables): layer norms
    around one, matrices scaled by their fan-in, the rest around zero."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for owner in module.modules():
            is_norm = "LayerNorm" in type(owner).__name__
            for name, tensor in [*owner.named_parameters(recurse=False), *owner.named_buffers(recurse=False)]:
                if name in ("pixel_mean", "pixel_std"):
                    continue
                noise = torch.randn(tensor.shape, generator=generator)
                if is_norm and name == "weight":
                    tensor.copy_(1.0 + 0.2 * noise)
                elif tensor.dim() >= 2 and tensor.shape[0] > 1 and tensor[0].numel() > 1:
                    tensor.copy_(noise / tensor[0].numel() ** 0.5)
                else:
                    tensor.copy_(0.3 * noise)


def original_sam(config: SegmentAnythingConfig = TINY, seed: int = 0) -> Any:
    """`segment_anything`'s `Sam` with our config's architecture and seeded random weights."""
    from segment_anything import modeling

    sam = modeling.Sam(
        mask_decoder=modeling.MaskDecoder(**_decoder_arguments(config, modeling)), **_parts(config, modeling)
    )
    randomize(sam, seed)
    return sam.eval()


def original_hq_sam(config: SegmentAnythingConfig = TINY, seed: int = 0) -> Any:
    """`segment_anything_hq`'s `Sam` (with `MaskDecoderHQ`) for our config, seeded random weights."""
    from segment_anything_hq import modeling

    decoder = modeling.MaskDecoderHQ(
        **_decoder_arguments(config, modeling), vit_dim=config.image_encoder.embed_dim
    )
    sam = modeling.Sam(mask_decoder=decoder, **_parts(config, modeling))  # pyright: ignore[reportArgumentType]
    randomize(sam, seed)
    return sam.eval()


def save_original(module: nn.Module, path: Path) -> Path:
    """The checkpoint as Meta's releases are: the plain state dict, pickled."""
    torch.save(module.state_dict(), path)
    return path


def convert_original(path: Path, out: Path, name: str = "sam.vit_b") -> SegmentAnything:
    """`zoo convert NAME --source PATH`, then `zoo.load` of the output."""
    convert(name, out=out, source=str(path))
    model = zoo.load(str(out / name))
    assert isinstance(model, SegmentAnything)
    return model


def relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    """max |ours − reference| / max |reference|."""
    return ((ours.double() - reference.double()).abs().max() / reference.double().abs().max()).item()


__all__ = [
    "TINY",
    "convert_original",
    "original_hq_sam",
    "original_sam",
    "randomize",
    "relative_error",
    "save_original",
]

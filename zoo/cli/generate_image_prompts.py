"""`zoo generate`'s image prompts: IP-Adapters from `zoo convert ip-adapter` outputs, each with its image,
encoded by a CLIP image encoder `zoo convert clip_vision...` wrote, injected into the UNet before
generating."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from zoo.configs import qualified_name
from zoo.errors import ConfigError, FormatError
from zoo.foundationals.clip.image_encoder import CLIPImageEncoder
from zoo.foundationals.clip.image_preprocessing import CLIPImagePreprocessor
from zoo.foundationals.ip_adapter.ip_adapter import IPAdapter, IPAdapterConfig, check_image_encoder
from zoo.loading import build_from_config, load, read_output_config


def read_clip_image(path: Path, size: int) -> torch.Tensor:
    """(1, 3, size, size): the RGB image as transformers' `CLIPImageProcessor` prepares it for an encoder
    of `size` pixels (diffusers' IP-Adapter pipelines use it with the encoder's size)."""
    from PIL import Image

    with Image.open(path) as image:
        rgb = image.convert("RGB")
        data = torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8)
        pixels = data.reshape(rgb.height, rgb.width, 3).permute(2, 0, 1)
    return CLIPImagePreprocessor(shortest_edge=size, crop_size=size)(pixels)


def _fits(folder: Path, config: IPAdapterConfig) -> bool:
    try:
        data = read_output_config(folder)
    except FormatError:  # not an output folder
        return False
    if data["model_class"] != qualified_name(CLIPImageEncoder):
        return False
    encoder: Any = build_from_config(data, device="meta")
    try:
        check_image_encoder(config, encoder.config)
    except ConfigError:
        return False
    return True


def find_image_encoder(out: Path, config: IPAdapterConfig) -> Path:
    """The one converted CLIP image encoder in `out` whose feature the IP-Adapter reads.

    Raises:
        ConfigError: None fits, or several do.
    """
    fitting = [folder for folder in sorted(out.iterdir()) if folder.is_dir() and _fits(folder, config)]
    if len(fitting) == 1:
        return fitting[0]
    if not fitting:
        raise ConfigError(
            f"no converted CLIP image encoder in {out} gives the feature this IP-Adapter reads "
            f"({config.image_embedding_dim} wide)",
            file=out,
            hint="convert the one it was trained with (zoo convert clip_vision.vit_h14 or "
            "clip_vision.vit_big_g14 --out OUT), or name one with --image-encoder DIR",
        )
    names = ", ".join(folder.name for folder in fitting)
    raise ConfigError(
        f"several image encoders in {out} fit: {names}", file=out, hint="choose with --image-encoder"
    )


def _image_encoder(folder: Path, model: Any) -> CLIPImageEncoder:
    encoder = load(folder, device=model.device, dtype=model.dtype)
    if not isinstance(encoder, CLIPImageEncoder):
        raise ConfigError(
            f"not a CLIP image encoder output folder: it holds a {type(encoder).__name__}", file=folder
        )
    return encoder


def attach_ip_adapters(
    model: Any,
    adapters: Sequence[tuple[Path, float]],
    images: Sequence[Path],
    image_encoder: Path | None,
    out: Path,
    guided: bool,
) -> list[dict[str, Any]]:
    """Load, inject and set every IP-Adapter; the i-th image goes to the i-th adapter, or one to all.
    Under guidance, each pairs its image with diffusers' negative. Returns what was attached."""
    if adapters and len(images) not in (1, len(adapters)):
        raise ConfigError(
            f"{len(adapters)} --ip-adapter and {len(images)} --image: give one image, or one each"
        )
    encoders: dict[Path, CLIPImageEncoder] = {}
    attached = []
    for index, (path, scale) in enumerate(adapters):
        adapter = load(path, device=model.device, dtype=model.dtype)
        if not isinstance(adapter, IPAdapter):
            raise ConfigError(
                f"not an IP-Adapter output folder: it holds a {type(adapter).__name__}", file=path
            )
        folder = image_encoder or find_image_encoder(out, adapter.config)
        if folder not in encoders:
            encoders[folder] = _image_encoder(folder, model)
        encoder, image = encoders[folder], images[index if len(images) > 1 else 0]
        pixels = read_clip_image(image, encoder.config.image_size).to(model.device, model.dtype)
        with torch.no_grad():
            feature = (adapter.guided_image_embedding if guided else adapter.image_embedding)(encoder, pixels)
        adapter.inject(model.unet)
        adapter.scale = scale
        adapter.set_image_embedding(feature)
        attached.append(
            {"folder": str(path), "scale": scale, "image": str(image), "image_encoder": str(folder)}
        )
    return attached


__all__ = ["attach_ip_adapters", "find_image_encoder", "read_clip_image"]

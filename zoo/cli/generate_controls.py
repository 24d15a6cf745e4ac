"""`zoo generate`'s structural controls: ControlNets and T2I-Adapters from `zoo convert` outputs, each
with its condition image, attached to the UNet before generating."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from zoo.errors import ConfigError


def read_image(path: Path, width: int, height: int, channels: int) -> torch.Tensor:
    """(1, channels, height, width) in [0, 1]: the image resized as diffusers' control image processor
    does (Lanczos), gray for one channel."""
    from PIL import Image

    with Image.open(path) as image:
        converted = image.convert("L" if channels == 1 else "RGB").resize(
            (width, height), Image.Resampling.LANCZOS
        )
        data = torch.frombuffer(bytearray(converted.tobytes()), dtype=torch.uint8)
    return data.reshape(height, width, channels).permute(2, 0, 1)[None].float() / 255


def attach_controls(
    model: Any,
    controlnets: Sequence[tuple[Path, float]],
    adapters: Sequence[tuple[Path, float]],
    images: Sequence[Path],
    size: tuple[int, int],
) -> list[dict[str, Any]]:
    """Load and inject every control; the i-th image goes to the i-th control (ControlNets first), or
    one image to all, resized to the control's size for the latents of an image of `size` (height,
    width): the image size with SD's autoencoders. Returns what was attached, for the PNG's metadata."""
    import zoo
    from zoo.foundationals.controlnet import ControlNet
    from zoo.foundationals.controlnet.adapter import ControlNetAdapter
    from zoo.foundationals.t2i_adapter import T2IAdapter
    from zoo.foundationals.t2i_adapter.injection import T2IAdapterInjection

    specs = [
        *((path, scale, ControlNet) for path, scale in controlnets),
        *((path, scale, T2IAdapter) for path, scale in adapters),
    ]
    if specs and len(images) not in (1, len(specs)):
        raise ConfigError(
            f"{len(specs)} control model(s) and {len(images)} --control-image: give one image, or one each"
        )
    attached = []
    for index, (path, scale, kind) in enumerate(specs):
        loaded = zoo.load(path, device=model.device, dtype=model.dtype)
        image_path = images[index if len(images) > 1 else 0]
        name = f"control{index}"
        if kind is ControlNet and isinstance(loaded, ControlNet):
            channels, factor = loaded.config.conditioning_channels, loaded.config.downscale_factor
            control: Any = ControlNetAdapter(model.unet, loaded, name, scale=scale)
        elif kind is T2IAdapter and isinstance(loaded, T2IAdapter):
            channels, factor = loaded.config.in_channels, loaded.config.pixels_per_latent
            control = T2IAdapterInjection(model.unet, loaded, name, scale=scale)
        else:
            raise ConfigError(
                f"not a {kind.__name__} output folder: it holds a {type(loaded).__name__}", file=path
            )
        height, width = (side // model.autoencoder.config.downscale_factor * factor for side in size)
        image = read_image(image_path, width, height, channels).to(model.device, model.dtype)
        with torch.no_grad():
            control.inject().set_condition(image)
        attached.append(
            {"kind": kind.__name__, "folder": str(path), "scale": scale, "image": str(image_path)}
        )
    return attached


__all__ = ["attach_controls", "read_image"]

"""Text to image from `zoo convert` outputs: find the UNet, text encoder and autoencoder of a pipeline in
an output folder, with the tokenizers and the scheduler config they carried, and generate.

    sd = load_stable_diffusion("out", device="cuda", dtype=torch.float16)
    generated = sd.generate(GenerationSettings("a lighthouse at dawn", seed=1, steps=30, solver="euler"))
    write_png("image.png", generated.image, generated.settings.to_dict())

Components are told by their model class (`config.json`); when the folder holds several pipelines'
outputs, they are told apart by the conversion name's family part, and you choose with `family=`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from zoo.configs import qualified_name
from zoo.errors import ConfigError, FormatError
from zoo.formats import CONFIG_NAME, WEIGHTS_NAME
from zoo.foundationals.clip.tokenizer import CLIPTokenizer
from zoo.foundationals.latent_diffusion.autoencoder import LatentDiffusionAutoencoder
from zoo.foundationals.latent_diffusion.model import StableDiffusion
from zoo.foundationals.latent_diffusion.text_encoders import SD15TextEncoder, SDXLTextEncoder
from zoo.foundationals.latent_diffusion.unet import UNet
from zoo.loading import load

ROLES = {
    qualified_name(UNet): "unet",
    qualified_name(SD15TextEncoder): "text_encoder",
    qualified_name(SDXLTextEncoder): "text_encoder",
    qualified_name(LatentDiffusionAutoencoder): "autoencoder",
}
TOKENIZER_FOLDERS = ("tokenizer", "tokenizer_2")
SCHEDULER_CONFIG = Path("scheduler") / "scheduler_config.json"


@dataclass(frozen=True)
class PipelineFolders:
    """Where a pipeline's converted components are."""

    unet: Path
    text_encoder: Path
    autoencoder: Path


def find_pipeline(out: Path, family: str | None = None, autoencoder: Path | None = None) -> PipelineFolders:
    """The UNet, text encoder and autoencoder folders of one pipeline in `out`.

    Raises:
        ConfigError: A component is missing, or there are several pipelines (or several of a component)
            and nothing says which; the message lists what there is.
    """
    found = _components(out)
    groups = sorted({group for group, role in found if role == "unet"})
    if family is not None:
        groups = [family] if family in groups else []
    if len(groups) != 1:
        have = ", ".join(sorted(p.name for paths in found.values() for p in paths)) or "nothing"
        problem = "several pipelines" if groups else "no UNet"
        raise ConfigError(
            f"{problem} in {out} (converted outputs: {have})",
            file=out,
            hint="choose one with --family"
            if groups
            else "convert a pipeline first: zoo convert FAMILY --out OUT",
        )
    group = groups[0]
    return PipelineFolders(
        _one(found, group, "unet", out),
        _one(found, group, "text_encoder", out),
        autoencoder or _one(found, group, "autoencoder", out),
    )


def _one(found: Mapping[tuple[str, str], list[Path]], group: str, role: str, out: Path) -> Path:
    paths = found.get((group, role), [])
    if len(paths) != 1:
        which = ", ".join(p.name for p in paths) or "none"
        hint = f"choose one with --{role.replace('_', '-')} OUT/NAME" if paths else f"convert the {role} too"
        raise ConfigError(f"{out}: one {role} is needed for {group}, found {which}", file=out, hint=hint)
    return paths[0]


def _components(out: Path) -> dict[tuple[str, str], list[Path]]:
    """(family part of the conversion name, role) -> folders, from each output's config.json."""
    if not out.is_dir():
        raise FormatError("no such output folder", file=out)
    found: dict[tuple[str, str], list[Path]] = {}
    for folder in sorted(out.iterdir()):
        data = _output_config(folder)
        role = ROLES.get(str(data.get("model_class"))) if data else None
        if data and role:
            group = str(data.get("component", folder.name)).partition(".")[0]
            found.setdefault((group, role), []).append(folder)
    return found


def _output_config(folder: Path) -> dict[str, Any] | None:
    if not (folder / CONFIG_NAME).is_file() or not (folder / WEIGHTS_NAME).is_file():
        return None
    try:
        data = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def read_tokenizers(text_encoder: Path, towers: int) -> list[CLIPTokenizer]:
    """The tokenizers a converted text encoder carried, one per tower."""
    folders = [text_encoder / name for name in TOKENIZER_FOLDERS[:towers]]
    missing = [folder for folder in folders if not folder.is_dir()]
    if missing:
        raise FormatError(
            f"no {missing[0].name}/ beside the text encoder: the source it was converted from had none",
            file=missing[0],
            hint="convert it again from a pipeline folder that has its tokenizers",
        )
    return [CLIPTokenizer.from_folder(folder) for folder in folders]


def read_scheduler_config(unet: Path) -> dict[str, Any]:
    """The scheduler config the converted UNet carried."""
    path = unet / SCHEDULER_CONFIG
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise FormatError(
            "no scheduler config beside the UNet: the source it was converted from had none",
            file=path,
            hint="convert it again from a pipeline folder that has scheduler/scheduler_config.json",
        ) from error
    except ValueError as error:
        raise FormatError(f"the scheduler config is not JSON: {error}", file=path) from error
    if not isinstance(data, dict):
        raise FormatError("the scheduler config is not a JSON object", file=path)
    return data  # pyright: ignore[reportUnknownVariableType]


def load_stable_diffusion(
    out: str | Path,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    family: str | None = None,
    autoencoder: str | Path | None = None,
) -> StableDiffusion:
    """The text-to-image model of the pipeline converted into `out`.

    The autoencoder keeps float32 when `dtype` is float16 and its config says float16 overflows
    (`force_upcast`, SDXL's VAE): it decodes in float32 either way, as diffusers does.
    """
    folders = find_pipeline(Path(out), family, Path(autoencoder) if autoencoder else None)
    unet = load(folders.unet, device=device, dtype=dtype)
    text_encoder = load(folders.text_encoder, device=device, dtype=dtype)
    vae = load(folders.autoencoder, device=device)
    vae_dtype = torch.float32 if dtype == torch.float16 and vae.config.force_upcast else dtype
    towers = 2 if isinstance(text_encoder, SDXLTextEncoder) else 1
    return StableDiffusion(
        unet=unet,
        text_encoder=text_encoder,
        autoencoder=vae.to(vae_dtype),
        tokenizers=read_tokenizers(folders.text_encoder, towers),
        scheduler_config=read_scheduler_config(folders.unet),
    )


__all__ = [
    "PipelineFolders",
    "find_pipeline",
    "load_stable_diffusion",
    "read_scheduler_config",
    "read_tokenizers",
]

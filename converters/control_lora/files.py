"""The Control-LoRA files Stability released, as declared sources, and how zoo tells one from its shapes.

`stabilityai/control-lora` holds four kinds (canny, depth, recolor, sketch) at two ranks (128, 256), all
for SDXL base 1.0. Their revision and sha256 are not recorded yet (no Hub access where this was written),
so a local file matches a declared one by its name; once a sha256 is pinned, by its bytes too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from converters import sdxl
from converters.declaration import BasedFile, PinnedFile, Shape
from converters.family import Recognizer
from zoo.manifest import CONTROL_LORA_PREFIX

HUB_REPO = "stabilityai/control-lora"
# The Hub's id for a licence it has no id of its own for; the name and link say which one.
LICENSE = "other"
LICENSE_NAME = "stabilityai-community-license"
LICENSE_LINK = f"https://huggingface.co/{HUB_REPO}"
UNPINNED = "not pinned yet: record revision and sha256 on a machine with Hub access"
KINDS = ("canny", "depth", "recolor", "sketch")
RANKS = (128, 256)
ENTRY_PREFIX = CONTROL_LORA_PREFIX
BASE = sdxl.UNET.name
MARKER = "lora_controlnet"
SDXL_CONTEXT = 2048  # SDXL's cross-attention width (its two text encoders' features, concatenated)
ADDED_EMBEDDING = "label_emb."  # the added text/time embedding an SDXL UNet has and SD 1.x lacks


def hub_filename(kind: str, rank: int) -> str:
    """Where the file is in the repository (the rank-128 sketch file carries a `-metadata` suffix)."""
    suffix = "-metadata" if (kind, rank) == ("sketch", 128) else ""
    return f"control-LoRAs-rank{rank}/control-lora-{kind}-rank{rank}{suffix}.safetensors"


def _declared(kind: str, rank: int) -> BasedFile:
    filename = hub_filename(kind, rank)
    return BasedFile(
        name=ENTRY_PREFIX + Path(filename).stem,
        description=f"Stability's {kind} Control-LoRA, rank {rank}, for the SDXL base UNet",
        pinned=PinnedFile(HUB_REPO, filename, None, None, None, LICENSE, UNPINNED),
        base=BASE,
        license_name=LICENSE_NAME,
        license_link=LICENSE_LINK,
    )


DECLARED = tuple(_declared(kind, rank) for rank in RANKS for kind in KINDS)


def declared_file(path: Path, sha256: str) -> BasedFile | None:
    """The declared file `path` is: the same name, and the same bytes when the declared sha256 is known."""
    for declared in DECLARED:
        pinned = declared.pinned
        if Path(pinned.filename).name == path.name and pinned.sha256 in (None, sha256):
            return declared
    return None


@dataclass(frozen=True)
class ControlLoraShapes:
    """What a Control-LoRA's tensor shapes tell: its ranks and whether an SDXL UNet is its base."""

    ranks: tuple[int, ...]
    sdxl: bool


def read_shapes(shapes: Mapping[str, Shape]) -> ControlLoraShapes:
    ranks = sorted({shape[1] for key, shape in shapes.items() if key.endswith(".up") and len(shape) > 1})
    widths = {shape[-1] for key, shape in shapes.items() if key.endswith("attn2.to_k.down")}
    sdxl_base = any(key.startswith(ADDED_EMBEDDING) for key in shapes) or SDXL_CONTEXT in widths
    return ControlLoraShapes(tuple(ranks), sdxl_base)


def _matches(rank: int | None, sdxl_base: bool) -> Callable[[Mapping[str, Shape]], bool]:
    def matches(shapes: Mapping[str, Shape]) -> bool:
        if MARKER not in shapes:
            return False
        read = read_shapes(shapes)
        return read.sdxl == sdxl_base and (rank is None or read.ranks == (rank,))

    return matches


def _ranked(rank: int) -> Recognizer:
    names = ", ".join(Path(d.pinned.filename).name for d in DECLARED if f"rank{rank}" in d.name)
    return Recognizer(
        f"a Control-LoRA of rank {rank} for SDXL (declared: {HUB_REPO} {names}); its base is the SDXL UNet "
        f"({BASE}): zoo convert control-lora FILE --base OUT/{BASE}",
        _matches(rank, True),
    )


RECOGNIZERS = (
    *(_ranked(rank) for rank in RANKS),
    Recognizer(
        f"a Control-LoRA for SDXL of a rank {HUB_REPO} does not release; its base is the SDXL UNet "
        f"({BASE}): zoo convert control-lora FILE --base OUT/{BASE}",
        _matches(None, True),
    ),
    Recognizer(
        "a Control-LoRA whose shapes fit no SDXL UNet (no added text/time embedding, cross-attention "
        f"not {SDXL_CONTEXT} wide): zoo converts Control-LoRAs for SDXL only",
        _matches(None, False),
    ),
)

__all__ = [
    "DECLARED",
    "ENTRY_PREFIX",
    "HUB_REPO",
    "RECOGNIZERS",
    "declared_file",
    "hub_filename",
    "read_shapes",
]

"""The released DINOv2 backbones: one conversion each, named by size and registers.

Each release is on the Hub as a transformers folder (`facebook/dinov2-*`: `Dinov2Model`;
`facebook/dinov2-with-registers-*`: `Dinov2WithRegistersModel`) and as an original file
(`dinov2_vits14_pretrain.pth`, `dinov2_vits14_reg4_pretrain.pth`, ...).
"""

from __future__ import annotations

from dataclasses import dataclass

from zoo.foundationals.dinov2 import DINOv2Config

FAMILY_NAME = "dinov2"
LICENSE = "apache-2.0"
# component -> (Hub repo suffix, title)
SIZES = {
    "vits14": ("small", "ViT-S/14"),
    "vitb14": ("base", "ViT-B/14"),
    "vitl14": ("large", "ViT-L/14"),
    "vitg14": ("giant", "ViT-g/14"),
}
REGISTERS_SUFFIX = "_reg4"


@dataclass(frozen=True)
class Release:
    """One released backbone.

    Attributes:
        component: Its conversion's component name (`vitb14`, `vitb14_reg4`).
        title: How people name it (`ViT-B/14 with registers`).
        hub_repo: Its transformers folder on the Hub.
        config: Our config for it, with transformers' interpolation.
    """

    component: str
    title: str
    hub_repo: str
    config: DINOv2Config

    @property
    def name(self) -> str:
        return f"{FAMILY_NAME}.{self.component}"

    @property
    def original_file(self) -> str:
        """Its file name in the original release."""
        return f"{FAMILY_NAME}_{self.component}_pretrain.pth"

    def same_kind(self, config: DINOv2Config) -> bool:
        """Whether `config` has this release's registers and feed-forward (any width and depth)."""
        return (config.num_registers, config.feedforward) == (
            self.config.num_registers,
            self.config.feedforward,
        )

    def same_size(self, config: DINOv2Config) -> bool:
        """Whether `config` has this release's kind and width."""
        return self.same_kind(config) and config.hidden_size == self.config.hidden_size


def _release(size: str, registers: bool) -> Release:
    config = getattr(DINOv2Config, size)(registers=registers)
    repo, title = SIZES[size]
    if registers:
        return Release(
            size + REGISTERS_SUFFIX,
            f"{title} with registers",
            f"facebook/dinov2-with-registers-{repo}",
            config,
        )
    return Release(size, title, f"facebook/dinov2-{repo}", config)


RELEASES = tuple(_release(size, registers) for registers in (False, True) for size in SIZES)


def release_of_size(config: DINOv2Config) -> Release | None:
    """The release with this config's kind and width, if there is one."""
    return next((release for release in RELEASES if release.same_size(config)), None)


def describe(config: DINOv2Config) -> str:
    """A config in words, for messages: `ViT-S/14 (384 wide, 12 layers, no registers)`."""
    release = release_of_size(config)
    registers = f"{config.num_registers} registers" if config.num_registers else "no registers"
    layers = f"{config.num_layers} layer{'' if config.num_layers == 1 else 's'}"
    shape = f"{config.hidden_size} wide, {layers}, {registers}, {config.feedforward}"
    return f"{release.title} ({shape})" if release else f"a DINOv2 of no released size ({shape})"


__all__ = ["FAMILY_NAME", "LICENSE", "RELEASES", "Release", "describe", "release_of_size"]

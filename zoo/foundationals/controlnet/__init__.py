"""ControlNets for SD 1.5 and SDXL, and the adapter that adds their residuals to our UNet."""

from zoo.foundationals.controlnet.controlnet import ControlNet, ControlNetConfig

__all__ = ["ControlNet", "ControlNetConfig"]

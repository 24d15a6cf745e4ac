"""T2I-Adapters (full, light, SDXL) and the adapter that adds their features to our UNet's down path."""

from zoo.foundationals.t2i_adapter.t2i_adapter import T2IAdapter, T2IAdapterConfig

__all__ = ["T2IAdapter", "T2IAdapterConfig"]

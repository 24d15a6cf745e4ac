"""The name of the UNet's context, shared by its building blocks (and by the adapters that join it)."""

CONTEXT = "unet"
"""Name of the context that carries the conditioning, the timestep embedding and the skips."""

__all__ = ["CONTEXT"]

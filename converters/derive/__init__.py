"""Derive our model configs from upstream (diffusers / transformers) configs."""

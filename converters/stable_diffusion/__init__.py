"""Shared builders of the Stable Diffusion families (`sdxl`, `sd15`): their components as conversions,
config derivations, example inputs, original single-file layouts and the writer of synthetic ones.

Not a family itself: it registers nothing. Each family folder fills these builders with its own facts.
"""

"""Adapters: chains that take the place of a target module without editing it."""

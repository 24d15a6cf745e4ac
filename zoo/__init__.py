"""zoo: weight conversion and model zoo for chain-based PyTorch models."""

__version__ = "0.1.0"

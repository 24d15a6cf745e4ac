"""zoo: weight conversion and model zoo for chain-based PyTorch models."""

__version__ = "0.1.0"


def load(path: str, device: str = "cpu", dtype: object = None) -> object:
    """The ready chain model from a converted output folder (see `zoo.loading.load`)."""
    from zoo.loading import load as _load  # here, so `import zoo` alone stays free of torch

    return _load(path, device=device, dtype=dtype)  # pyright: ignore[reportArgumentType]

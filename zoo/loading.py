"""`zoo.load(PATH)`: the ready chain model from a converted output folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from zoo.configs import config_from_dict, import_model_class
from zoo.errors import FormatError
from zoo.formats import CONFIG_NAME, WEIGHTS_NAME


def read_output_config(folder: Path) -> dict[str, Any]:
    """The `config.json` of a converted output folder."""
    path = folder / CONFIG_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise FormatError("not a zoo output folder: no config.json", file=folder) from error
    except ValueError as error:
        raise FormatError(f"config.json is not valid JSON: {error}", file=path) from error
    for key in ("model_class", "config_class", "config"):
        if key not in data:
            raise FormatError(f"config.json has no {key!r}: not written by zoo convert", file=path)
    return data


def build_from_config(data: dict[str, Any], device: torch.device | str | None = None) -> torch.nn.Module:
    """Our model, as an output folder's config.json describes it (weights uninitialised)."""
    model_class = import_model_class(data["model_class"])
    config = config_from_dict(import_model_class(data["config_class"]), data["config"])
    return model_class(config, device=device)


def load(path: str | Path, device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> Any:
    """Build the model an output folder describes and load its weights (strict: every key must match).

    Args:
        path: `OUT/<name>`, holding `model.safetensors` and `config.json`.
        device: Where the model goes.
        dtype: Cast to this dtype; by default the weights keep the dtype they were saved in.
    """
    folder = Path(path)
    model = build_from_config(read_output_config(folder), device="meta")
    state = load_file(folder / WEIGHTS_NAME, device=str(device))
    missing, unexpected = set(model.state_dict()) - set(state), set(state) - set(model.state_dict())
    if missing or unexpected:
        raise FormatError(
            f"weights do not match the model: missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}",
            file=folder / WEIGHTS_NAME,
        )
    model.load_state_dict(state, strict=True, assign=True)
    model = model.to(device=device)
    if dtype is not None:
        model = model.to(dtype=dtype)
    return model.eval()


__all__ = ["CONFIG_NAME", "WEIGHTS_NAME", "build_from_config", "load", "read_output_config"]

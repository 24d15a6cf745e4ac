"""Control-LoRA: our merged ControlNet against a diffusers ControlNetModel whose weights are the base
UNet's plus the file's deltas, computed here; and one clear error, with nothing written, for a base that
does not match, an unknown tensor or a missing half."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from foundationals.control_pairs import TINY_UNETS, converted, randomize, relative_error  # pyright: ignore[reportMissingImports]
from safetensors.torch import save_file

import zoo
from converters.control_lora import convert_control_lora
from converters.controlnet.original import SUBFOLDER, controlnet_tensors
from converters.controlnet.upstream import controlnet_example_inputs
from zoo.errors import ConfigError, FormatError
from zoo.foundationals.controlnet import ControlNet

LIMIT = 1e-5
RANK = 2
OWN = ("controlnet_cond_embedding.", "controlnet_down_blocks.", "controlnet_mid_block.")


def _control_lora(reference: Any, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A file in Stability's layout; `reference` (a ControlNetModel copied from the UNet) gets the same
    changes: low-rank deltas on copied weights, new values for the ControlNet's own tensors and for every
    other bias or norm (the rest keep the base's)."""
    state = reference.state_dict()
    header = {key: (tuple(t.shape), t.dtype) for key, t in state.items()}
    file: dict[str, torch.Tensor] = {"lora_controlnet": torch.zeros(0)}
    for index, (name, tensor) in enumerate(sorted(controlnet_tensors(SUBFOLDER, header).items())):
        key = tensor.inputs[0][1]
        value = state[key]
        if key.startswith(OWN) or (value.ndim == 1 and index % 2):
            file[name] = torch.randn(value.shape, generator=generator) * 0.1
            value.copy_(file[name])
        elif value.ndim >= 2:
            up = torch.randn(value.shape[0], RANK, generator=generator) * 0.1
            down = torch.randn(RANK, *value.shape[1:], generator=generator) * 0.1
            file[name.removesuffix(".weight") + ".up"], file[name.removesuffix(".weight") + ".down"] = (
                up,
                down,
            )
            value.add_((up @ down.flatten(1)).reshape(value.shape))
    return file


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from diffusers.models.controlnets.controlnet import ControlNetModel
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel

    root = tmp_path_factory.mktemp("control-lora")
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**TINY_UNETS["sdxl"])
    randomize(unet, 0)
    converted(unet, "sdxl.unet", "unet", root / "base")
    reference = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 8, 16, 16)).eval()
    with torch.no_grad():
        file = _control_lora(reference, torch.Generator().manual_seed(1))
    save_file(file, root / "control-lora-canny-rank2.safetensors")
    sd15 = randomize(UNet2DConditionModel(**TINY_UNETS["sd15"]), 0)
    converted(sd15, "sd15.unet", "unet", root / "sd15-base")
    return {"root": root, "reference": reference, "file": file}


def _base(setup: dict[str, Any], kind: str = "sdxl") -> Path:
    prefix = "" if kind == "sdxl" else "sd15-"
    return setup["root"] / f"{prefix}base" / "out" / f"{kind}.unet"


def test_the_merged_controlnet_gives_diffusers_residuals(setup: dict[str, Any], tmp_path: Path) -> None:
    result = convert_control_lora(
        setup["root"] / "control-lora-canny-rank2.safetensors", _base(setup), tmp_path
    )
    ours = zoo.load(str(result.folder))
    assert isinstance(ours, ControlNet)
    inputs = controlnet_example_inputs(ours.config)
    with torch.no_grad():
        expected, got = inputs.run_upstream(setup["reference"]), inputs.run_target(ours)
    errors = [relative_error(o, r) for o, r in zip(got, expected, strict=True)]
    print(f"Control-LoRA residuals: max relative error {max(errors):.2e} ({result.low_rank} low-rank pairs)")
    assert max(errors) <= LIMIT and result.low_rank > 0 and result.replaced > 0


def _refused(
    setup: dict[str, Any],
    tmp_path: Path,
    file: dict[str, torch.Tensor],
    error: type[Exception],
    match: str,
    kind: str = "sdxl",
) -> None:
    path = tmp_path / "broken.safetensors"
    save_file(file, path)
    with pytest.raises(error, match=match):
        convert_control_lora(path, _base(setup, kind), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_sd15_base_is_refused(setup: dict[str, Any], tmp_path: Path) -> None:
    _refused(setup, tmp_path, setup["file"], ConfigError, "SD 1.x UNet", kind="sd15")


def test_an_unknown_tensor_is_refused(setup: dict[str, Any], tmp_path: Path) -> None:
    _refused(
        setup,
        tmp_path,
        setup["file"] | {"output_blocks.0.0.weight": torch.zeros(1)},
        FormatError,
        "no ControlNet of this base",
    )


def test_a_missing_half_is_refused(setup: dict[str, Any], tmp_path: Path) -> None:
    down = next(key for key in setup["file"] if key.endswith(".down"))
    file = {key: value for key, value in setup["file"].items() if key != down}
    _refused(setup, tmp_path, file, FormatError, "lacks its down half")


def test_a_controlnet_file_is_not_a_control_lora(setup: dict[str, Any], tmp_path: Path) -> None:
    file = {key: value for key, value in setup["file"].items() if key != "lora_controlnet"}
    _refused(setup, tmp_path, file, FormatError, "not a Control-LoRA")

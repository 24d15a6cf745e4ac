"""The repr of a model is a tree that reads like its architecture, with repeated blocks folded."""

from __future__ import annotations

import torch

import zoo.fluxion as fl
from zoo.foundationals.latent_diffusion.unet import UNet, UNetConfig


def test_the_tree_shows_names_essential_attributes_and_nesting() -> None:
    model = fl.Chain(
        fl.Conv2d(3, 8, 3, padding=1),
        fl.Residual(fl.GroupNorm(2, 8), fl.SiLU()),
        fl.Concatenate(fl.Identity(), fl.Flatten(1), dim=1),
    )
    assert repr(model) == "\n".join(
        [
            "Chain",
            "├── Conv2d(3, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))",
            "├── Residual",
            "│   ├── GroupNorm(2, 8, eps=1e-05, affine=True, bias=True)",
            "│   └── SiLU",
            "└── Concatenate(dim=1)",
            "    ├── Identity",
            "    └── Flatten(start_dim=1, end_dim=-1)",
        ]
    )


def test_identical_consecutive_blocks_fold_and_different_ones_do_not() -> None:
    def block(width: int) -> fl.Chain:
        return fl.Chain(fl.Linear(width, width), fl.GeLU())

    model = fl.Chain(block(4), block(4), block(4), block(8), block(4))
    assert repr(model).split("\n")[:4] == [
        "Chain",
        "├── Chain_1..Chain_3 ×3",
        "│   ├── Linear(in_features=4, out_features=4, bias=True)",
        "│   └── GeLU(approximate='none')",
    ]
    assert "├── Chain_4\n│   ├── Linear(in_features=8" in repr(model)
    assert "└── Chain_5\n" in repr(model)


def test_lora_adapters_read_with_their_loras() -> None:
    model = fl.Chain(fl.Linear(8, 4))
    fl.LoraAdapter(model.Linear, fl.LinearLora("style", 8, 4, rank=2)).inject(model)
    assert repr(model) == "\n".join(
        [
            "Chain",
            "└── LoraAdapter",
            "    ├── Linear(in_features=8, out_features=4, bias=True)",
            "    └── LinearLora(name='style', rank=2, in_features=8, out_features=4)",
            "        ├── Linear_1(in_features=8, out_features=2, bias=False)",
            "        ├── Linear_2(in_features=2, out_features=4, bias=False)",
            "        └── Multiply(scale=1.0, bias=0.0)",
        ]
    )


def test_a_child_whose_name_is_not_its_class_shows_both() -> None:
    assert repr(fl.GLU(fl.GeLU())) == "GLU\n└── activation: GeLU(approximate='none')"


def test_the_unet_folds_its_transformer_layers() -> None:
    with torch.device("meta"):
        unet = UNet(UNetConfig.tiny_sdxl())
    text = repr(unet)
    assert "TransformerLayer_1..TransformerLayer_2 ×2" in text
    assert len(text.split("\n")) < sum(1 for _ in unet.modules())  # folding makes it shorter than the modules

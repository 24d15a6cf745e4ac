"""`zoo convert lora DIR --base BASE`: a folder of downloads, good, broken and unsupported files alike.

Each good file is converted (and loads exactly like the original), each other one is named with its
reason, nothing is written for it, and the command exits 1. Single files of an unsupported variant are
refused with one error naming it, writing nothing.
"""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from lora_helpers import (  # pyright: ignore[reportMissingImports]
    UNET_POINTWISE_TARGETS,
    TinyFamily,
    add_unet_lora,
    diffusers_prefixed,
    save_kohya,
)
from lycoris_helpers import kohya_network, save_lycoris  # pyright: ignore[reportMissingImports]
from safetensors import safe_open
from safetensors.torch import load_file

from converters.lora import convert_lora, load_lora
from zoo.cli import main
from zoo.errors import ConfigError, FormatError
from zoo.manifest import read_manifest

ATTENTION_ONLY = {
    "unet_target_module": ["Transformer2DModel"],
    "text_encoder_target_module": ["CLIPAttention"],
}
LOHA_DORA = {
    **ATTENTION_ONLY,
    "module_algo_map": {"CLIPAttention": {"algo": "lokr", "weight_decompose": True}},
}


def _lycoris(fam: TinyFamily, path: Path, preset: dict[str, Any], **settings: Any) -> Path:
    network, _unet, _towers = kohya_network(fam, preset, seed=41, **settings)
    return save_lycoris(network, path)


@pytest.fixture(scope="module")
def downloads(tiny: dict[str, TinyFamily], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder as users have them: two good LoRAs, a broken one, an OFT, two files of one name, a note."""
    fam, folder = tiny["sdxl"], tmp_path_factory.mktemp("downloads")
    _lycoris(fam, folder / "loha_dora.safetensors", LOHA_DORA, algo="loha", train_norm=True)
    unet = fam.upstream("unet")
    add_unet_lora(unet, seed=42, targets=UNET_POINTWISE_TARGETS)
    save_kohya(folder / "plain.safetensors", diffusers_prefixed(unet, None, text_model=True), alpha=2)
    good = (folder / "plain.safetensors").read_bytes()
    (folder / "broken.safetensors").write_bytes(good[: len(good) // 2])
    _lycoris(fam, folder / "oft.safetensors", ATTENTION_ONLY, algo="diag-oft")
    shutil.copy(folder / "plain.safetensors", folder / "twin.safetensors")
    torch.save(load_file(folder / "plain.safetensors"), folder / "twin.bin")
    (folder / "notes.txt").write_text("trigger word: zoo\n")
    return folder


def _kinds_by_key(path: Path) -> dict[str, int]:
    """The file's modules counted from its raw keys (LoHa: `hada_w1_a`, LoKr: `lokr_w1`, norm: `w_norm`),
    independently of zoo's reader; a module with a `dora_scale` is a DoRA of its kind."""
    with safe_open(str(path), "pt") as handle:
        keys = set(handle.keys())
    kinds = {"hada_w1_a": "LoHa", "lokr_w1": "LoKr", "w_norm": "norm"}
    counted: Counter[str] = Counter()
    for key in keys:
        module, _, role = key.partition(".")
        if role in kinds:
            kind = kinds[role]
            counted[f"DoRA ({kind})" if f"{module}.dora_scale" in keys else kind] += 1
    return dict(counted)


def _run(*args: str) -> Any:
    return CliRunner().invoke(main, ["convert", "lora", *args])


def test_a_folder_converts_the_good_files_and_names_the_others(
    tiny: dict[str, TinyFamily], downloads: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = _run(str(downloads), "--base", str(tiny["sdxl"].out), "--out", str(out), "--json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    statuses = {Path(item["source"]).name: item for item in report["files"]}
    assert sorted(statuses) == sorted(p.name for p in downloads.iterdir() if p.suffix != ".txt")
    assert (report["converted"], report["refused"]) == (2, 4)
    expected = _kinds_by_key(downloads / "loha_dora.safetensors")
    assert expected.keys() == {"DoRA (LoKr)", "LoHa", "norm"}
    assert statuses["loha_dora.safetensors"]["kinds"] == expected
    assert "truncated or corrupt" in statuses["broken.safetensors"]["error"]
    assert "LyCORIS OFT" in statuses["oft.safetensors"]["error"]
    assert all("same name" in statuses[name]["error"] for name in ("twin.safetensors", "twin.bin"))
    written = sorted(path.name for path in out.iterdir())
    assert written == ["loha_dora.safetensors", "manifest.json", "plain.safetensors"]
    assert sorted(read_manifest(out / "manifest.json").entries) == ["lora/loha_dora", "lora/plain"]


def test_the_summary_table_and_a_clean_folder(
    tiny: dict[str, TinyFamily], downloads: Path, tmp_path: Path
) -> None:
    result = _run(str(downloads), "--base", str(tiny["sdxl"].out), "--out", str(tmp_path / "a"), "--dry-run")
    assert result.exit_code == 1 and "2 checked, 4 refused (of 6 files" in result.stdout
    assert (
        re.search(r"oft\.safetensors +refused .* LyCORIS OFT", result.stdout)
        and not (tmp_path / "a").exists()
    )
    clean = tmp_path / "clean"
    clean.mkdir()
    shutil.copy(downloads / "loha_dora.safetensors", clean)
    result = _run(str(clean), "--base", str(tiny["sdxl"].out), "--out", str(tmp_path / "b"))
    assert result.exit_code == 0 and "1 converted, 0 refused" in result.stdout


def test_a_converted_lycoris_file_records_its_kinds_and_loads_like_the_original(
    tiny: dict[str, TinyFamily], downloads: Path, tmp_path: Path
) -> None:
    fam, source = tiny["sdxl"], downloads / "loha_dora.safetensors"
    converted = convert_lora(source, fam.out, out=tmp_path).output
    with safe_open(str(converted), "pt") as handle:
        metadata = handle.metadata()
    assert metadata["zoo.format"] == "zoo.lora/2"
    by_key = _kinds_by_key(source)
    expected = {"loha": by_key["LoHa"], "lokr": by_key["DoRA (LoKr)"], "norm": by_key["norm"]}
    assert json.loads(metadata["zoo.lora.kinds"]) == expected
    layers = json.loads(metadata["zoo.lora.layers"]).values()
    assert {(layer["kind"], layer["dora"]) for layer in layers} == {
        ("loha", None),
        ("lokr", "lycoris"),
        ("norm", None),
    }
    for component in ("unet", "text_encoder"):
        original, ours = fam.ours(component), fam.ours(component)
        load_lora(original, source, scale=0.7)
        assert load_lora(ours, converted, scale=0.7).format == "zoo"
        for a, b in zip(fam.run(component, ours, False), fam.run(component, original, False), strict=True):
            assert torch.equal(a, b)


def test_a_scale_is_not_folded_into_a_dora(
    tiny: dict[str, TinyFamily], downloads: Path, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="cannot be folded into DoRA"):
        convert_lora(downloads / "loha_dora.safetensors", tiny["sdxl"].out, out=tmp_path / "out", scale=0.5)
    assert not (tmp_path / "out").exists()


def test_unsupported_variants_are_named_in_one_error(tiny: dict[str, TinyFamily], tmp_path: Path) -> None:
    fam = tiny["sdxl"]
    path = _lycoris(fam, tmp_path / "glora.safetensors", ATTENTION_ONLY, algo="glora")
    with pytest.raises(FormatError, match="variants zoo does not support: LyCORIS GLoRA") as caught:
        convert_lora(path, fam.out, out=tmp_path / "out")
    assert caught.value.hint is not None and "LoHa" in caught.value.hint
    assert not (tmp_path / "out").exists()

"""Paths, parents and walks that can skip subtrees."""

from __future__ import annotations

import pytest
import torch

import zoo.fluxion as fl


def _model() -> fl.Chain:
    torch.manual_seed(0)
    return fl.Chain(
        fl.Linear(2, 2),
        fl.Residual(fl.Chain(fl.Linear(2, 2), fl.SiLU())),
        fl.Chain(fl.Linear(2, 2), fl.Chain(fl.Linear(2, 2))),
    )


def test_every_layers_path_leads_back_to_it_and_prefixes_its_state_dict_keys() -> None:
    model = _model()
    for module in model.modules():
        if isinstance(module, fl.ContextModule) and module is not model:
            path = module.get_path()
            assert model.layer(path) is module
            assert all(key.startswith(path + ".") for key in module.state_dict(prefix=path + "."))
            assert set(module.state_dict(prefix=path + ".")) <= set(model.state_dict())
    assert model.get_path() == ""


def test_a_path_from_an_inner_chain_and_from_a_chain_that_does_not_hold_it() -> None:
    model = _model()
    linear = model.layer("Chain.Chain.Linear", fl.Linear)
    assert linear.get_path(model.Chain) == "Chain.Linear"
    with pytest.raises(fl.FluxionError, match="not inside this Residual"):
        linear.get_path(model.Residual)


def test_paths_follow_adapters() -> None:
    model = _model()
    target = model.layer("Chain.Linear", fl.Linear)
    adapter = fl.LoraAdapter(target, fl.LinearLora.for_target("a", target, rank=1)).inject()
    assert target.get_path() == "Chain.LoraAdapter.Linear"
    adapter.eject()
    assert target.get_path() == "Chain.Linear"


def test_find_parent_returns_the_nearest_chain_of_a_type() -> None:
    model = _model()
    silu = model.layer("Residual.Chain.SiLU", fl.SiLU)
    assert silu.find_parent(fl.Chain) is model.Residual.Chain
    assert silu.find_parent(fl.Residual) is model.Residual
    assert silu.find_parent(fl.Sum) is None
    assert silu.ensure_find_parent(fl.Residual) is model.Residual
    with pytest.raises(fl.FluxionError, match="no Sum above"):
        silu.ensure_find_parent(fl.Sum)


def test_walk_prunes_subtrees_by_type_or_predicate() -> None:
    model = _model()
    everywhere = [parent.get_path() for _, parent in model.walk(fl.Linear)]
    assert everywhere == ["", "Residual.Chain", "Chain", "Chain.Chain"]
    no_residual = [parent.get_path() for _, parent in model.walk(fl.Linear, prune=fl.Residual)]
    assert no_residual == ["", "Chain", "Chain.Chain"]
    shallow = model.walk(
        fl.Linear, prune=lambda module, parent: parent is model.Chain and module is model.Chain.Chain
    )
    assert [parent.get_path() for _, parent in shallow] == ["", "Residual.Chain", "Chain"]


def test_a_predicate_raising_stop_iteration_skips_the_subtree_instead_of_failing() -> None:
    model = _model()

    def linears_outside_residuals(module: torch.nn.Module, _parent: fl.Chain) -> bool:
        if isinstance(module, fl.Residual):
            raise StopIteration
        return isinstance(module, fl.Linear)

    found = [parent.get_path() for _, parent in model.walk(linears_outside_residuals)]
    assert found == ["", "Chain", "Chain.Chain"]

"""The distill operator through real jobs: the probe job's table, the protocol's checks on
it, a distilled child run by the executor, and a search whose ``nimm show --json`` lists it."""
from __future__ import annotations

import json

import numpy as np
import pytest

from nimm_jupyter.distill import Law, distilled_source
from nimm_jupyter.execution import EvalRequest, LocalExecutor, TrainConfig
from nimm_jupyter.execution.protocol import FrameReader, encode_array
from nimm_jupyter.proposers.base import Proposal, Proposer, Strategy
from nimm_jupyter.search.api import search

from test_distill import HYBRID

FAST = TrainConfig(max_epochs=20, patience=10, polish_iters=20)


@pytest.fixture(scope="module")
def trained(tab, tmp_path_factory):
    """The toy tabular hybrid, trained in a job, its weights saved; and the executor."""
    weights = tmp_path_factory.mktemp("w") / "hybrid.pt"
    with LocalExecutor(workers=1) as ex:
        ex.submit(EvalRequest("fit", HYBRID, tab, TrainConfig(**{**FAST.to_dict(),
                                                                "save_weights": str(weights)})))
        result = ex.wait("fit")
        assert result.ok, result.message
        yield ex, result, weights.read_bytes()


@pytest.mark.timeout(120)
def test_probe_job_returns_the_network_table_on_training_inputs_only(tab, trained):
    ex, fitted, state = trained
    assert fitted.n_network_parameters == 8 * 2 + 8 + 8 + 1  # mlp(2, 1, hidden=8)
    ex.submit(EvalRequest("probe", HYBRID, tab, TrainConfig(), network_probe=state))
    probe = ex.wait("probe")
    assert probe.ok, probe.message
    assert set(probe.network_samples) == {"net"}
    x, y = probe.network_samples["net"]
    # the network is called on the features: its inputs are exactly the training rows
    np.testing.assert_allclose(x, tab.train.inputs, rtol=1e-6)
    assert y.shape == (len(tab.train.inputs), 1) and np.isfinite(y).all()
    assert np.abs(y).max() > 0  # the trained network, not a fresh (zero-output) one
    for other in (tab.val.inputs, tab.test.inputs):
        assert not any(np.isclose(x, row, rtol=1e-6).all(axis=1).any() for row in other)
    assert probe.n_network_parameters == fitted.n_network_parameters
    assert "network_samples" not in probe.to_dict()  # never journaled


def test_probe_of_a_model_with_other_weights_is_a_candidate_error(tab, trained):
    ex, _, state = trained
    other = HYBRID.replace("hidden=8", "hidden=4")
    ex.submit(EvalRequest("probe-bad", other, tab, TrainConfig(), network_probe=state))
    probe = ex.wait("probe-bad")
    assert probe.status.value == "runtime_error" and "loading the weights" in probe.message


def _done_frame(networks) -> bytes:
    frames = [{"kind": "started"}, {"kind": "done", "result": {"status": "ok"}, "networks": networks}]
    return b"".join(json.dumps(f).encode() + b"\n" for f in frames)


def test_protocol_type_checks_the_network_table():
    good = {"net": {"inputs": encode_array(np.zeros((3, 2))), "outputs": encode_array(np.ones((3, 1)))}}
    reader = FrameReader(["y"])
    reader.feed(_done_frame(good))
    assert reader.violation is None and reader.result.network_samples["net"][1].shape == (3, 1)
    bad = [
        {"net": {"inputs": encode_array(np.zeros((3, 2))), "outputs": encode_array(np.ones((2, 1)))}},
        {"os.system('x')": good["net"]},
        {"net": {"inputs": encode_array(np.full((3, 2), np.nan)), "outputs": good["net"]["outputs"]}},
        {"net": {"inputs": encode_array(np.zeros((5000, 2))), "outputs": encode_array(np.zeros((5000, 1)))}},
        {f"n{i}": good["net"] for i in range(9)},
        ["net"],
    ]
    for networks in bad:
        reader = FrameReader(["y"])
        reader.feed(_done_frame(networks))
        assert reader.violation is not None, networks if isinstance(networks, list) else list(networks)


@pytest.mark.timeout(120)
def test_distilled_child_runs_through_the_executor_without_network_parameters(tab, trained):
    ex, fitted, _ = trained
    # the toy law is y = 1.5 x1^2 - 0.7 x2: a law the refit can reach from a rough start
    law = Law(n_in=2, laws=[{"1": 0.0, "x0^2": 1.0, "x1": -0.5}])
    ex.submit(EvalRequest("child", distilled_source(HYBRID, {"net": law}, 0), tab, FAST))
    child = ex.wait("child")
    assert child.ok, child.message
    assert child.n_network_parameters == 0 and child.n_parameters == 4
    assert child.parameters["net.c0_1"] == pytest.approx(1.5, rel=0.1)
    assert child.val.rmse < 0.2


class _OneHybrid(Proposer):
    """One branch whose draft is the toy hybrid (then nothing new to refine)."""

    name = "one-hybrid"

    def strategies(self, ctx, k, exclude):
        return [Strategy("hybrid", "a linear law plus a network", "h")][:k] if not exclude else []

    def draft(self, ctx, strategy):
        return Proposal(code=HYBRID, change="the hybrid")

    def refine(self, ctx, parent, history):
        return Proposal(code=None, change="refine", error="nothing to refine")

    def debug(self, ctx, failed):
        return Proposal(code=None, change="debug", error="nothing to debug")


@pytest.mark.timeout(180)
def test_search_distils_and_show_json_lists_the_law(tab, tmp_path, capsys):
    from nimm_jupyter.cli import main

    s = search(tab, budget=2, branches=1, proposer=_OneHybrid(), workers=1, device="cpu",
               run_dir=tmp_path / "run", train=FAST)
    nodes = s.result.nodes
    assert [n.operator for n in nodes] == ["draft", "distill"]
    assert nodes[1].parent == nodes[0].id and nodes[1].ok, nodes[1].message
    assert main(["show", str(tmp_path / "run"), "--json"]) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)["nodes"]}
    hybrid, law = rows[nodes[0].id], rows[nodes[1].id]
    assert hybrid["operator"] == "draft" and hybrid["n_network_parameters"] == 33
    assert "formula" not in hybrid
    assert law["operator"] == "distill" and law["n_network_parameters"] == 0
    assert law["formula"]["text"].startswith("net(x) = ") and "x0" in law["formula"]["text"]
    assert law["formula"]["latex"].startswith(r"\mathrm{net}(x) = ")
    assert law["distilled_from"] == nodes[0].id and law["removed_network_parameters"] == 33
    assert law["vs_neural_parent"]["parent_val_rmse"] == pytest.approx(hybrid["val_rmse"])
    # the tree's neural -> law lineage, and the law in the exported model cell
    assert main(["show", str(tmp_path / "run")]) == 0
    text = capsys.readouterr().out
    assert f"node {nodes[0].id} (neural, 33 network parameters) -> node {nodes[1].id} (law" in text
    from nimm_jupyter.export.cells import export_cells

    header, model = export_cells(s.result, [nodes[1].id], base=tmp_path)[:2]
    assert "**Law**" in header.source and law["formula_fitted"]["latex"] in header.source
    assert law["formula"]["text"] in model.source and "class Model(_NeuralModel):" in model.source

"""The offline proposer writes valid candidates for every built-in task, deterministically."""
from __future__ import annotations

import pytest
import torch

import nimm_jupyter.tasks as tasks
from nimm_jupyter.proposers.base import NodeView
from nimm_jupyter.proposers.context import context_for
from nimm_jupyter.proposers.offline import GRAMMARS, OfflineProposer

SMALL = {
    "lung_cancer": {"n_patients": 8},
    "lung_cancer_chemo": {"n_patients": 8},
    "lung_cancer_chemo_radio": {"n_patients": 8},
}


def _forward(task, code):
    ns: dict = {}
    exec(compile(code, "<candidate>", "exec"), ns)
    spec = task.spec()
    model = ns["Model"](spec)
    tr = task.train
    if task.kind.value == "trajectory":
        y = torch.as_tensor(tr.targets[:3], dtype=torch.float32)
        u = torch.as_tensor(tr.inputs[:3], dtype=torch.float32)
        out = model(y[:, : task.context], u, spec.time)
        assert out.shape == (y.shape[0], y.shape[1] - task.context, y.shape[2])
    else:
        x = torch.as_tensor(tr.inputs[:3], dtype=torch.float32)
        out = model(x)
        assert out.shape == (x.shape[0], len(task.targets))
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert any(p.grad is not None for p in model.parameters())


@pytest.fixture(scope="module", params=tasks.list_tasks())
def task(request):
    return tasks.get(request.param, **SMALL.get(request.param, {}))


def test_every_draft_and_single_edit_is_a_valid_candidate(task):
    ctx = context_for(task)
    proposer = OfflineProposer(seed=0)
    strategies = proposer.strategies(ctx, 20, [])
    assert len(strategies) >= 3
    assert len({s.key for s in strategies}) == len(strategies)
    checked = 0
    for strategy in strategies:
        draft = proposer.draft(ctx, strategy)
        assert draft.code and draft.error is None
        _forward(task, draft.code)
        grammar = GRAMMARS[draft.meta["grammar"]](ctx)
        for slot, choice in grammar.mutations(draft.meta["genome"])[:6]:
            _forward(task, grammar.render({**draft.meta["genome"], slot: choice}))
            checked += 1
    assert checked > 0


def _view(i, proposal, val=1.0, status="ok"):
    return NodeView(id=i, branch=0, operator="draft", change=proposal.change, code=proposal.code,
                    status=status, metrics={"val": {"rmse_norm": val}}, meta=proposal.meta)


def test_refine_changes_exactly_one_slot_and_never_repeats():
    task = tasks.get("lung_cancer_chemo", n_patients=8)
    ctx = context_for(task)
    proposer = OfflineProposer(seed=3)
    parent = _view(0, proposer.draft(ctx, proposer.strategies(ctx, 1, [])[0]))
    history: list[NodeView] = []
    genomes = {str(sorted(parent.meta["genome"].items()))}
    for i in range(1, 9):
        child = proposer.refine(ctx, parent, history)
        assert child.code, child.error
        diff = {k for k in child.meta["genome"] if child.meta["genome"][k] != parent.meta["genome"][k]}
        assert diff == {child.meta["edited_slot"]}
        assert ":" in child.change and "->" in child.change
        key = str(sorted(child.meta["genome"].items()))
        assert key not in genomes
        genomes.add(key)
        history.append(_view(i, child, val=0.5))


def test_same_seed_same_proposals_and_other_seed_differs():
    task = tasks.get("lung_cancer_chemo", n_patients=8)
    ctx = context_for(task)

    def run(seed):
        p = OfflineProposer(seed=seed)
        parent = _view(0, p.draft(ctx, p.strategies(ctx, 1, [])[0]))
        return [p.refine(ctx, parent, []).code for _ in range(6)]

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_exclude_and_debug():
    task = tasks.get("lung_cancer_chemo", n_patients=8)
    ctx = context_for(task)
    p = OfflineProposer()
    first = p.strategies(ctx, 2, [])
    more = p.strategies(ctx, 3, first)
    assert not {s.key for s in first} & {s.key for s in more}
    draft = p.draft(ctx, first[0])
    fixed = p.debug(ctx, _view(1, draft, status="diverged"))
    assert fixed.code and fixed.code != draft.code
    foreign = NodeView(id=2, branch=0, operator="draft", change="", code="x", status="runtime_error",
                       metrics={}, meta={})
    assert p.debug(ctx, foreign).error


def test_tumour_branches_do_not_start_from_the_simulators_family():
    # The simulator is Gompertz growth; an exponential law plus a network of log-volume on the
    # growth rate is that family. The first branches start from the prior's law, and the
    # growth-law slot holds the textbook laws as equal alternatives.
    task = tasks.get("lung_cancer_chemo", n_patients=8)
    ctx = context_for(task)
    grammar = GRAMMARS["tumour"](ctx)
    assert set(grammar.slot("growth").choices) >= {"exponential", "logistic", "gompertz",
                                                   "bertalanffy"}
    p = OfflineProposer(seed=0)
    first = [s for s in p.strategies(ctx, 6, []) if s.key.startswith("tumour:")][:2]
    assert [s.key for s in first] == ["tumour:residual_dV", "tumour:none"]
    for strategy in first:
        draft = p.draft(ctx, strategy)
        assert draft.meta["genome"]["growth"] == "exponential"
        assert "self.K" not in draft.code

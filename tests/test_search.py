"""Tree, policies and the run loop, with the fake executor/proposer (plus one real run)."""
from __future__ import annotations

import math
import time

import pytest

from fakes import FakeExecutor, FakeProposer, Recorder, fake_code
from nimm_jupyter.execution.base import ExecutorLost
from nimm_jupyter.modeling.result import EvalResult, SplitScores, Status
from nimm_jupyter.proposers.base import Proposal, Strategy
from nimm_jupyter.search.api import SearchError, search
from nimm_jupyter.search.journal import Journal
from nimm_jupyter.search.node import Node, NodeState, unified_diff
from nimm_jupyter.search.policies import NimmGenPolicy, make_policy
from nimm_jupyter.search.states import RunState, StopReason
from nimm_jupyter.search.tree import (
    Branch, BranchState, Tree, code_similarity, diverse_strategies, duplicate_of,
    similar_strategies,
)
from toy_tasks import make_toy_tabular, make_toy_trajectory

pytestmark = pytest.mark.timeout(60)
TASK = make_toy_tabular(n_train=16, n_val=8, n_test=8)


def run(tmp_path, proposer=None, executor=None, name="run", **kw):
    ex = executor or FakeExecutor(workers=kw.get("workers", 1))
    p = proposer or FakeProposer(executor=ex)
    if getattr(p, "executor", "x") is None:
        p.executor = ex
    s = search(TASK, proposer=p, executor=ex, run_dir=tmp_path / name, **kw)
    return s, p, ex


def ok_node(i, branch, score, parent=None, operator="draft"):
    r = EvalResult(Status.OK, val=SplitScores(rmse=score * 10, rmse_norm=score),
                   test=SplitScores(rmse=score * 11, rmse_norm=score))
    return Node(id=i, parent=parent, branch=branch, operator=operator,
                code=fake_code(f"b{branch}", score, variant=i), state="done", result=r)


# -- tree and diversity -------------------------------------------------------------------
def test_strategy_similarity_and_diversity():
    a = Strategy("Neural growth-rate correction", "an MLP corrects the growth rate")
    assert similar_strategies(a, Strategy("neural growth rate correction", "other words"))
    assert similar_strategies(a, Strategy("x", "y", key="k")) is False
    assert similar_strategies(Strategy("a", "", key="k"), Strategy("b", "", key="k"))
    new = [Strategy("residual on dV/dt", "adds a network"),
           Strategy("Residual on dV/dt ", "adds a network"),
           Strategy("time-varying growth rate", "rho(t) from a network"),
           Strategy("", "no title")]
    kept = diverse_strategies(new, [a], k=5)
    assert [s.title for s in kept] == ["residual on dV/dt", "time-varying growth rate"]
    assert len(diverse_strategies(new, [], k=1)) == 1


def test_code_duplicates_ignore_comments_but_not_edits():
    a = "x = 1  # one\ny = x + 2\n"
    b = "# header\nx = 1\ny  =  x + 2\n"
    c = "x = 1\ny = x * 2\n"
    assert code_similarity(a, b) == 1.0
    nodes = [Node(id=0, parent=None, branch=0, operator="draft", code=a)]
    assert duplicate_of(b, nodes) is nodes[0]
    assert duplicate_of(c, nodes) is None
    assert duplicate_of(c, nodes, near=0.5) is nodes[0]


def test_node_roundtrip_and_diff():
    n = ok_node(3, 1, 0.5, parent=1, operator="refine")
    n.diff = unified_diff("a\nb\n", "a\nc\n", 1)
    assert "-b" in n.diff and "+c" in n.diff and "node_1.py" in n.diff
    back = Node.from_dict(n.to_dict())
    assert back == n and back.result.score == 0.5
    view = n.view()
    assert "test" not in view.metrics and view.status == "ok"
    with pytest.raises(ValueError, match="operator"):
        Node(id=0, parent=None, branch=0, operator="mutate")


def test_bandit_prefers_better_branch_but_explores():
    tree = Tree()
    good, bad = tree.add_branch(Strategy("good", "")), tree.add_branch(Strategy("bad", ""))
    tree.add_node(ok_node(0, good.id, 0.5))
    tree.add_node(ok_node(1, bad.id, 1.0))
    pol = NimmGenPolicy(branches=2, patience=100)
    picks = []
    for i in range(2, 30):
        b = pol.choose_branch(tree)
        picks.append(b)
        parent = tree.branch_best(b)
        # the good branch keeps the same level, the bad one too: only the bandit decides
        tree.add_node(ok_node(i, b, parent.score * 1.0001, parent=parent.id, operator="refine"))
    assert picks[0] == good.id
    assert picks.count(good.id) > picks.count(bad.id) >= 2
    scores = pol.ucb_scores(tree)
    assert set(scores) == {good.id, bad.id}


# -- nimmgen end to end with fakes --------------------------------------------------------
def test_nimmgen_branches_drafts_refines(tmp_path):
    p = FakeProposer(draft_scores={"alpha": 1.0, "beta": 0.5, "gamma": 2.0})
    s, p, ex = run(tmp_path, proposer=p, budget=12, branches=3)
    r = s.result
    assert r.stop_reason == "budget" and len(r.nodes) == 12
    drafts = [n for n in r.nodes if n.operator == "draft"]
    assert [n.strategy for n in drafts[:3]] == ["alpha", "beta", "gamma"]
    assert p.calls[0].kind == "strategies" and p.calls[0].arg == 3
    assert all(n.parent is None for n in drafts)
    for n in r.nodes:
        if n.operator == "refine":
            parent = r.node(n.parent)
            assert parent.branch == n.branch and n.diff.startswith("---")
    per_branch = {b: sum(n.branch == b for n in r.nodes) for b in range(3)}
    assert per_branch[1] == max(per_branch.values())  # the best draft's branch is expanded most
    assert r.best.branch == 1 and r.best.score < 0.5
    assert r.tokens == 150 * len(p.calls) and math.isclose(r.cost, 0.001 * len(p.calls))


def test_refine_gets_branch_history_with_effects(tmp_path):
    p = FakeProposer(titles=["alpha"])
    s, p, ex = run(tmp_path, proposer=p, budget=5, branches=1)
    refines = [c for c in p.calls if c.kind == "refine"]
    assert len(refines) == 4
    parent_id, history = refines[-1].arg
    assert len(history) >= 2 and parent_id not in (None,)


def test_duplicate_strategies_rejected(tmp_path):
    p = FakeProposer(titles=["alpha", "Alpha", "alpha ", "beta", "beta", "gamma", "delta"])
    s, p, ex = run(tmp_path, proposer=p, budget=6, branches=3)
    titles = [b["strategy"] for b in s.result.branches]
    assert titles[:3] == ["alpha", "beta", "gamma"]
    assert len(set(titles)) == len(titles)


def test_duplicate_draft_code_prunes_branch_and_reseeds(tmp_path):
    class SameTwice(FakeProposer):
        def draft(self, ctx, strategy):
            prop = super().draft(ctx, strategy)
            if strategy.title == "beta":  # beta's draft is alpha's model with a new comment
                prop.code = "# another comment\n" + fake_code("alpha", 1.0)
            return prop

    s, p, ex = run(tmp_path, proposer=SameTwice(), budget=6, branches=3)
    r = s.result
    codes = [n.code for n in r.nodes]
    assert len(set(codes)) == len(codes)
    beta = next(b for b in r.branches if b["strategy"] == "beta")
    assert beta["status"] == "pruned" and beta["nodes"] == 0 and "duplicat" in beta["note"]
    assert {n.strategy for n in r.nodes if n.operator == "draft"} == {"alpha", "gamma", "delta"}


def test_duplicate_refinements_are_not_evaluated(tmp_path):
    # every refinement returns its parent's code unchanged
    p = FakeProposer(titles=["alpha"], same_refine=True, factors={"alpha": 1.0})
    rec = Recorder()
    s, p, ex = run(tmp_path, proposer=p, budget=8, branches=1, on_event=rec)
    r = s.result
    assert len(r.nodes) == len(ex.started) == 1
    assert r.stop_reason in ("no_new_proposals", "exhausted")
    rejected = [e for e in rec.events if e.type == "log" and e.data.get("kind") == "rejected"]
    assert rejected and rejected[0].data["duplicate_of"] == 0
    assert r.tokens == 150 * len(p.calls)  # rejected proposals still cost tokens


def test_debug_depth_cap_then_branch_dropped(tmp_path):
    p = FakeProposer(titles=["alpha", "beta", "gamma", "delta"], fail_drafts={"alpha"},
                     debug_fixes=False)
    s, p, ex = run(tmp_path, proposer=p, budget=10, branches=2, debug_depth=2)
    r = s.result
    alpha = [n for n in r.nodes if n.strategy == "alpha"]
    assert [n.operator for n in alpha] == ["draft", "debug", "debug"]
    assert [n.debug_depth for n in alpha] == [0, 1, 2]
    assert all(n.state == "failed" and n.status == "runtime_error" for n in alpha)
    assert alpha[1].parent == alpha[0].id and alpha[2].parent == alpha[1].id
    debug_calls = [c for c in p.calls if c.kind == "debug"]
    assert len(debug_calls) == 2
    branch = next(b for b in r.branches if b["strategy"] == "alpha")
    assert branch["status"] == "pruned" and "no working model" in branch["note"]
    assert any(b["strategy"] == "gamma" for b in r.branches)  # reseeded


def test_debug_fix_is_then_refined(tmp_path):
    p = FakeProposer(titles=["alpha"], fail_drafts={"alpha"})
    s, p, ex = run(tmp_path, proposer=p, budget=4, branches=1)
    ops = [(n.operator, n.state) for n in s.result.nodes]
    assert ops[:2] == [("draft", "failed"), ("debug", "done")]
    assert ops[2][0] == "refine" and s.result.nodes[2].parent == 1


def test_stagnant_branch_pruned_and_reseeded(tmp_path):
    p = FakeProposer(draft_scores={"alpha": 0.5, "beta": 1.0}, factors={"alpha": 1.5, "beta": 1.2})
    s, p, ex = run(tmp_path, proposer=p, budget=14, branches=2, patience=2)
    r = s.result
    pruned = [b for b in r.branches if b["status"] == "pruned"]
    assert pruned and all("no improvement in 2" in b["note"] for b in pruned)
    assert len(r.branches) > 2  # new strategies replaced the pruned branches
    strategies_calls = [c for c in p.calls if c.kind == "strategies"]
    assert len(strategies_calls) >= 2
    # every pruned branch really had patience-many non-improving expansions
    for b in pruned:
        nodes = [n for n in r.nodes if n.branch == b["branch"]]
        assert len(nodes) >= 3


def test_failed_or_raising_proposals_become_failed_nodes(tmp_path):
    class Flaky(FakeProposer):
        def refine(self, ctx, parent, history):
            self._record("refine")
            if len([c for c in self.calls if c.kind == "refine"]) == 1:
                raise RuntimeError("API overloaded")
            return Proposal(code=None, change="nothing", error="no code block in the response",
                            tokens_in=10, tokens_out=5)

    s, p, ex = run(tmp_path, proposer=Flaky(titles=["alpha"]), budget=3, branches=1)
    r = s.result
    assert [n.status for n in r.nodes] == ["ok", "proposal_error", "proposal_error"]
    assert "API overloaded" in r.nodes[1].message
    assert "no code block" in r.nodes[2].message
    assert r.stop_reason == "budget"


# -- other policies ----------------------------------------------------------------------
def test_greedy_refines_global_best(tmp_path):
    p = FakeProposer(seed=3)
    s, p, ex = run(tmp_path, proposer=p, budget=8, branches=3, policy="greedy")
    r = s.result
    assert [n.operator for n in r.nodes[:3]] == ["draft"] * 3
    assert len({n.branch for n in r.nodes[:3]}) == 3
    for n in r.nodes[3:]:
        assert n.operator == "refine"
        earlier = [m for m in r.nodes if m.id < n.id - 1 and m.ok]  # known when decided
        assert r.node(n.parent).score == min(m.score for m in earlier)


def test_evolution_refines_from_top_pool(tmp_path):
    s, p, ex = run(tmp_path, proposer=FakeProposer(seed=1), budget=10, branches=3,
                   policy="evolution", policy_options={"pool": 2})
    r = s.result
    for n in r.nodes[3:]:
        assert n.operator == "refine"
        known = sorted((m for m in r.nodes if m.id < n.id - 1 and m.ok), key=lambda m: m.score)
        assert r.node(n.parent).id in [m.id for m in known[:2]]


def test_sampling_only_drafts(tmp_path):
    s, p, ex = run(tmp_path, proposer=FakeProposer(seed=2), budget=5, policy="sampling")
    assert [n.operator for n in s.result.nodes] == ["draft"] * 5
    assert all(c.kind == "draft" and c.arg is None for c in p.calls)


def test_bad_settings_raise_clear_errors(tmp_path):
    with pytest.raises(SearchError, match="unknown policy"):
        run(tmp_path, policy="annealing")
    with pytest.raises(SearchError, match="budget"):
        run(tmp_path, budget=0)
    with pytest.raises(SearchError, match="eval_timeout"):
        run(tmp_path, eval_timeout=0)
    with pytest.raises(SearchError, match="unknown task"):
        search("no_such_task", run_dir=tmp_path / "x", proposer=FakeProposer(),
               executor=FakeExecutor())
    with pytest.raises(ValueError, match="option"):
        make_policy("nimmgen", pool=3)


# -- budgets -----------------------------------------------------------------------------
def test_token_and_cost_budgets(tmp_path):
    s, p, ex = run(tmp_path, name="tok", budget=50, max_tokens=1000)
    r = s.result
    assert r.stop_reason == "max_tokens"
    assert 1000 <= r.tokens <= 1000 + 150
    s, p, ex = run(tmp_path, name="usd", budget=50, max_cost=0.0045)
    assert s.result.stop_reason == "max_cost" and s.result.cost < 0.0045 + 0.001 + 1e-9


def test_time_budget_cancels_running_evaluations(tmp_path):
    p = FakeProposer(sleep=0.3)
    t0 = time.time()
    s, p, ex = run(tmp_path, proposer=p, budget=50, time_limit=0.8)
    r = s.result
    assert r.stop_reason == "time_limit" and time.time() - t0 < 3.0
    assert sum(n.completed for n in r.nodes) >= 1
    assert all(n.state in ("done", "failed", "pending") for n in r.nodes)


class LosingExecutor(FakeExecutor):
    """A backend that loses its workers once two evaluations have finished."""

    def __init__(self) -> None:
        super().__init__()
        self.done = 0

    def poll(self, timeout: float = 0.1):
        if self.done >= 2:
            raise ExecutorLost("the workers went away")
        events = super().poll(timeout)
        self.done += sum(e.kind == "done" for e in events)
        return events


def test_lost_executor_stops_the_search_and_keeps_the_journal(tmp_path):
    ex = LosingExecutor()
    with pytest.raises(ExecutorLost, match="went away"):
        run(tmp_path, executor=ex, budget=6)
    journal = Journal.for_run(tmp_path / "run", readonly=True)
    try:
        row, nodes = journal.search_row(), journal.load_nodes()
    finally:
        journal.close()
    assert row["status"] == RunState.STOPPED
    assert row["stop_reason"] == "cluster_lost: the workers went away"
    assert StopReason.of(row["stop_reason"]) is StopReason.EXECUTOR_LOST
    assert sum(n.state is NodeState.DONE for n in nodes) == 2
    assert all(n.state in (NodeState.DONE, NodeState.PENDING) for n in nodes)


def test_states_are_their_stored_strings():
    node = Node.from_dict({"id": 0, "parent": None, "branch": 0, "operator": "draft",
                           "state": "running"})
    assert node.state is NodeState.RUNNING and f"{node.state}" == "running"
    assert Branch.from_dict({"id": 1, "strategy": None, "status": "pruned"}).status \
        is BranchState.PRUNED
    assert f"{StopReason.BUDGET}" == "budget" == StopReason.of("budget")
    assert StopReason.of("error: ValueError: x") is StopReason.ERROR
    assert StopReason.of("something else") is None
    with pytest.raises(ValueError, match="node state"):
        Node(id=0, parent=None, branch=0, operator="draft", state="finished")


# -- overlap, events, determinism --------------------------------------------------------
def test_proposer_works_while_evaluations_run(tmp_path):
    ex = FakeExecutor(workers=2)
    p = FakeProposer(sleep=0.25, delay=0.05, executor=ex)
    s, p, ex = run(tmp_path, proposer=p, executor=ex, budget=8, workers=2)
    assert len(s.result.nodes) == 8
    assert ex.max_active == 2
    overlapped = [c for c in p.calls if c.running >= 1]
    assert len(overlapped) >= 4
    times = [c.time for c in p.calls]
    assert all(b - a >= 0.045 for a, b in zip(times, times[1:]))  # one proposal at a time


def test_events_order_and_journal(tmp_path):
    rec = Recorder()
    s, p, ex = run(tmp_path, budget=5, on_event=rec)
    types = rec.types()
    assert types[0] == "search_started" and types[-1] == "search_finished"
    for n in s.result.nodes:
        mine = [e.type for e in rec.events if e.data.get("node") == n.id]
        assert mine[0] == "node_created" and mine[1] == "node_started"
        assert "node_progress" in mine and mine.index("node_finished") > mine.index("node_progress")
    finished = [e for e in rec.events if e.type == "node_finished"]
    assert {e.data["status"] for e in finished} == {"ok"}
    best_events = [e for e in rec.events if e.type == "best_changed"]
    assert best_events[-1].data["node"] == s.result.best.id
    for e in best_events:  # a best_changed follows the node_finished that changed the answer
        i = rec.events.index(e)
        assert rec.events[i - 1].type == "node_finished"
    assert all(e.run_id == s.run_id for e in rec.events)
    from nimm_jupyter.search.journal import Journal

    j = Journal.for_run(s.run_dir, readonly=True)
    logged = [e["type"] for e in j.events()]
    non_progress = [t for t in types if t != "node_progress"]
    assert [t for t in logged if t != "node_progress"] == non_progress


def test_deterministic_for_a_seed(tmp_path):
    def signature(name):
        s, p, ex = run(tmp_path, proposer=FakeProposer(seed=5), name=name, budget=10, seed=5,
                       policy="nimmgen")
        return [(n.parent, n.branch, n.operator, n.code) for n in s.result.nodes]

    assert signature("a") == signature("b")


def test_background_status_and_subscribe(tmp_path):
    p = FakeProposer(sleep=0.05)
    s, p, ex = run(tmp_path, proposer=p, budget=6, background=True)
    rec = Recorder()
    unsubscribe = s.subscribe(rec)
    st = s.status()
    assert set(st) >= {"evaluated", "failed", "running", "pending", "tokens", "cost",
                       "elapsed", "best_val", "best_node"}
    r = s.wait(timeout=20)
    unsubscribe()
    assert s.done and r.stop_reason == "budget" and s.status()["evaluated"] == 6
    assert "search_finished" in rec.types()
    assert s.best is not None and s.best.id == r.best.id
    table = r.table()
    assert list(table["id"]) == list(range(6))
    d = r.to_dict()
    assert d["best"]["id"] == r.best.id and "one standard error" in d["best_rule"]
    # the node the search selects on is named beside the one it hands back
    low = min((n for n in r.nodes if n.ok), key=lambda n: (n.score, n.id))
    assert d["lowest_val"]["id"] == low.id


# -- real executor, harness and offline proposer -----------------------------------------
@pytest.mark.timeout(120)
def test_real_local_executor_offline_proposer(tmp_path):
    from nimm_jupyter.modeling.config import TrainConfig

    task = make_toy_trajectory(n_train=8, n_val=4, n_test=4, T=10)
    s = search(task, budget=3, branches=2, proposer="offline", workers=1, device="cpu",
               run_dir=tmp_path / "real", train=TrainConfig(max_epochs=5, patience=5))
    r = s.result
    assert r.stop_reason == "budget" and len(r.nodes) == 3
    assert r.best is not None and r.best.ok and math.isfinite(r.best.rmse("test"))
    assert (tmp_path / "real" / "weights" / f"node_{r.best.id}.pt").exists()
    model = r.load_model()
    import torch

    assert isinstance(model, torch.nn.Module)
    (tmp_path / "real" / "weights" / f"node_{r.best.id}.pt").unlink()
    refit = r.load_model()  # no weights: refitted with the run's settings
    assert isinstance(refit, torch.nn.Module)


def test_unknown_executor_is_one_clear_error(tmp_path):
    from nimm_jupyter.search.api import SearchError, search

    with pytest.raises(SearchError, match="executor"):
        search("lung_cancer_chemo", task_options={"n_patients": 8}, budget=1,
               proposer="offline", executor="carrier-pigeon", run_dir=tmp_path / "r")


def test_event_bus_keeps_only_the_latest_subscriber_errors():
    from nimm_jupyter.search.events import MAX_ERRORS, Event, EventBus

    bus = EventBus()
    seen = []
    bus.subscribe(lambda e: 1 / 0)  # fails on every event, e.g. each progress event
    bus.subscribe(seen.append)
    for i in range(MAX_ERRORS + 50):
        bus.publish(Event("node_progress", "r", {"node": 0, "epoch": i}))
    assert len(seen) == MAX_ERRORS + 50  # the others still get every event
    assert len(bus.errors) == MAX_ERRORS and "ZeroDivisionError" in bus.errors[-1]

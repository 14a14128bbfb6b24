"""The SQLite journal: round trip, secrets, stop/resume and resume after ``kill -9``."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from fakes import FakeExecutor, FakeProposer, kill_9_after
from nimm_jupyter.modeling.result import EvalResult, SplitScores, Status
from nimm_jupyter.proposers.base import Strategy
from nimm_jupyter.search.api import SearchError, open_run, resume, search
from nimm_jupyter.search.events import Event
from nimm_jupyter.search.journal import Journal, sanitise, scrub
from nimm_jupyter.search.node import Node, NodeState
from nimm_jupyter.search.states import RunState, StopReason
from nimm_jupyter.search.tree import Branch, BranchState
from toy_tasks import make_toy_tabular

pytestmark = pytest.mark.timeout(90)
TESTS = Path(__file__).resolve().parent
TASK = make_toy_tabular(n_train=16, n_val=8, n_test=8)
FAKE_KEY = "sk-ant-api03-FAKEfakeFAKEfake0123456789abcdefXYZ"


def completed(result):
    return {n.id: n for n in result.nodes if n.completed}


def same(a: Node, b: Node) -> bool:
    """Equal nodes (NaN scores compare equal through their JSON text)."""
    return json.dumps(a.to_dict(), sort_keys=True) == json.dumps(b.to_dict(), sort_keys=True)


def test_roundtrip_nodes_branches_events_costs(tmp_path):
    j = Journal.for_run(tmp_path)
    j.init_search("r1", "toy", {"n": 3}, {"budget": 5, "train": {"max_epochs": 3}})
    b = Branch(id=0, strategy=Strategy("neural rate", "an MLP rate", key="k"))
    j.save_branch(b)
    r = EvalResult(Status.OK, val=SplitScores(1.0, 0.1, {"y": 1.0}),
                   test=SplitScores(2.0, 0.2), loss_curve=[{"epoch": 0, "train": 1, "val": 2}],
                   parameters={"rho": 0.3}, weights_path="w.pt")
    n = Node(id=0, parent=None, branch=0, operator="draft", strategy="neural rate",
             change="draft", code="class Model: ...\n", state="done", result=r,
             tokens_in=10, tokens_out=5, cost=0.01, started=1.0, finished=2.0,
             proposer_meta={"genome": {"a": "b"}})
    j.save_node(n, [Event("node_finished", "r1", {"node": 0})],
                cost={"operation": "draft", "tokens_in": 10, "tokens_out": 5, "cost": 0.01,
                      "model": "m", "raw": "text"})
    failed = Node(id=1, parent=0, branch=0, operator="refine", state="failed", error="no code")
    j.save_node(failed)
    j.set_meta("strategies_exhausted", True)
    j.close()

    j = Journal.for_run(tmp_path, readonly=True)
    tree = j.load_tree()
    assert same(tree.nodes[0], n) and same(tree.nodes[1], failed)
    assert tree.nodes[1].status == "proposal_error"
    assert tree.branches[0].strategy == b.strategy and tree.strategies_exhausted
    assert j.events()[0]["type"] == "node_finished"
    assert j.totals() == {"tokens_in": 10, "tokens_out": 5, "cost": 0.01}
    row = j.search_row()
    assert row["settings"]["train"]["max_epochs"] == 3 and row["status"] == "running"
    with pytest.raises(Exception, match="read-only"):
        j.set_meta("x", 1)


def test_states_are_stored_as_their_bare_values_and_read_back_as_enums(tmp_path):
    """Journals written before the state enums (plain strings) load, and new ones store the
    same text: a run's rows are byte-identical either way."""
    j = Journal.for_run(tmp_path)
    j.init_search("r1", "toy", {}, {"budget": 2})
    j.save_branch(Branch(id=0, strategy=None, status=BranchState.PRUNED, note="stale"))
    j.save_node(Node(id=0, parent=None, branch=0, operator="draft", code="x = 1\n",
                     state=NodeState.RUNNING))
    j.update_search(status=RunState.STOPPED, stop_reason=StopReason.STOPPED)
    j.close()
    db = sqlite3.connect(tmp_path / "journal.sqlite")
    try:
        assert db.execute("SELECT state, typeof(state), status FROM nodes").fetchall() == [
            ("running", "text", "running")]
        assert db.execute("SELECT status FROM branches").fetchall() == [("pruned",)]
        assert db.execute("SELECT status, stop_reason FROM search").fetchall() == [
            ("stopped", "stopped")]
        with db:  # what an older writer left: plain strings
            db.execute("UPDATE nodes SET state = 'failed', status = 'proposal_error'")
            db.execute("UPDATE branches SET status = 'active'")
            db.execute("UPDATE search SET status = 'error', stop_reason = 'error: KeyError: 1'")
    finally:
        db.close()
    j = Journal.for_run(tmp_path, readonly=True)
    try:
        tree, row = j.load_tree(), j.search_row()
    finally:
        j.close()
    assert tree.nodes[0].state is NodeState.FAILED and tree.nodes[0].status == "proposal_error"
    assert tree.branches[0].status is BranchState.ACTIVE
    assert row["status"] is RunState.ERROR
    assert StopReason.of(row["stop_reason"]) is StopReason.ERROR


def test_sanitise_and_scrub(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
    clean = sanitise({"api_key": FAKE_KEY, "nested": {"secret": 1, "ok": f"x {FAKE_KEY} y"},
                      "max_tokens": 5, "path": Path("/tmp"), "nan": float("nan")})
    assert clean == {"nested": {"ok": "x [redacted] y"}, "max_tokens": 5, "path": "/tmp",
                     "nan": None}
    assert scrub("key sk-ant-abcdefghijklmnop end") == "key [redacted] end"


def test_api_key_never_reaches_the_run_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
    ex = FakeExecutor()
    p = FakeProposer(leak=FAKE_KEY, executor=ex)  # its raw responses echo the key
    s = search(TASK, budget=4, branches=2, proposer=p, executor=ex, run_dir=tmp_path / "run",
               description=f"my key is {FAKE_KEY}", proposer_options={"api_key": FAKE_KEY})
    assert s.result.stop_reason == "budget"
    blobs = b"".join(f.read_bytes() for f in (tmp_path / "run").rglob("*") if f.is_file())
    assert b"sk-ant" not in blobs and FAKE_KEY.encode() not in blobs
    assert b"[redacted]" in blobs  # the journal did see (and scrub) it


def test_stop_then_resume_keeps_completed_nodes(tmp_path):
    ex = FakeExecutor()
    p = FakeProposer(sleep=0.15, executor=ex)
    s = search(TASK, budget=8, branches=2, proposer=p, executor=ex, run_dir=tmp_path / "run",
               background=True)
    while sum(n.completed for n in s.nodes) < 3:
        time.sleep(0.02)
    t0 = time.time()
    s.stop()
    assert time.time() - t0 < 2.0 and s.done
    first = s.result
    assert first.status == "stopped" and first.stop_reason == "stopped"
    assert open_run(tmp_path / "run").status == "stopped"
    done_before = completed(first)

    ex2 = FakeExecutor()
    s2 = resume(tmp_path / "run", proposer=FakeProposer(sleep=0.01, executor=ex2), executor=ex2)
    r = s2.result
    assert r.stop_reason == "budget" and len(r.nodes) == 8
    for i, n in done_before.items():
        assert same(r.node(i), n)
    rerun_ids = {int(job.split(":")[1]) for job, _ in ex2.started}
    assert not rerun_ids & set(done_before)
    assert len(ex2.started) == 8 - len(done_before)  # the cancelled one runs again


def test_resume_never_evaluates_more_than_the_budget(tmp_path):
    """A stop leaves a running node and one proposed ahead of it: resuming at the run's
    evaluated count + 1 re-runs one of them (the oldest), not both (once "4/3 evaluated")."""
    ex = FakeExecutor(delay=0.6)
    s = search(TASK, budget=8, branches=2, proposer=FakeProposer(executor=ex), executor=ex,
               run_dir=tmp_path / "run", background=True)
    deadline = time.time() + 20
    while time.time() < deadline and not (
            any(n.completed for n in s.nodes)
            and sum(not n.completed for n in s.nodes) >= 2):
        time.sleep(0.01)
    s.stop()
    first = s.result
    waiting = sorted(n.id for n in first.nodes if not n.completed)
    assert len(waiting) >= 2, "the stop should have left two unfinished nodes"
    budget = len(completed(first)) + 1

    ex2 = FakeExecutor()
    s2 = resume(tmp_path / "run", budget=budget, proposer=FakeProposer(executor=ex2),
                executor=ex2)
    r = s2.result
    assert r.stop_reason == "budget" and s2.status()["evaluated"] == budget
    assert [int(job.split(":")[1]) for job, _ in ex2.started] == waiting[:1]
    assert [n.id for n in r.nodes if not n.completed] == waiting[1:]  # kept for later
    # a larger budget later runs the one left over before proposing anything new
    ex3 = FakeExecutor()
    s3 = resume(tmp_path / "run", budget=budget + len(waiting), executor=ex3,
                proposer=FakeProposer(executor=ex3))
    assert s3.status()["evaluated"] == budget + len(waiting)
    assert int(ex3.started[0][0].split(":")[1]) == waiting[1]


def test_resume_can_extend_budget_and_rebuilds_user_task(tmp_path):
    ex = FakeExecutor()
    search(TASK, budget=3, proposer=FakeProposer(executor=ex), executor=ex,
               run_dir=tmp_path / "run")
    assert (tmp_path / "run" / "task.pkl").exists()
    ex2 = FakeExecutor()
    s2 = resume(tmp_path / "run", budget=5, proposer=FakeProposer(executor=ex2), executor=ex2)
    assert len(s2.result.nodes) == 5 and len(ex2.started) == 2
    assert s2.task.name == TASK.name and s2.settings["budget"] == 5
    # budgets count the whole run: resuming at the same budget evaluates nothing
    ex3 = FakeExecutor()
    s3 = resume(tmp_path / "run", proposer=FakeProposer(executor=ex3), executor=ex3)
    assert s3.result.stop_reason == "budget" and ex3.started == []


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(SearchError, match="no search journal"):
        resume(tmp_path / "nothing")
    with pytest.raises(SearchError, match="no search journal"):
        open_run(tmp_path / "nothing")
    ex = FakeExecutor()
    search(TASK, budget=1, proposer=FakeProposer(executor=ex), executor=ex,
           run_dir=tmp_path / "run")
    with pytest.raises(SearchError, match="already holds a search"):
        search(TASK, budget=1, proposer=FakeProposer(), executor=ex, run_dir=tmp_path / "run")
    with pytest.raises(SearchError, match="cannot be rebuilt by name"):
        resume(tmp_path / "run", executor=ex)
    with pytest.raises(SearchError, match="cannot change"):
        resume(tmp_path / "run", policy="greedy")


def test_a_run_dir_is_searched_by_one_search_at_a_time(tmp_path):
    ex = FakeExecutor()
    s = search(TASK, budget=6, proposer=FakeProposer(sleep=0.1, executor=ex), executor=ex,
               run_dir=tmp_path / "run", background=True)
    with pytest.raises(SearchError, match="another process"):
        resume(tmp_path / "run", proposer=FakeProposer(), executor=FakeExecutor())
    s.stop()


_KILL_SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from fakes import FakeExecutor, FakeProposer
    from toy_tasks import make_toy_tabular
    from nimm_jupyter.search.api import search
    ex = FakeExecutor()
    search(make_toy_tabular(n_train=16, n_val=8, n_test=8), budget=8, branches=2,
           proposer=FakeProposer(sleep=0.2, executor=ex), executor=ex, run_dir={run!r})
""")




def test_kill_9_then_resume(tmp_path):
    run_dir = tmp_path / "run"
    script = tmp_path / "run_search.py"
    script.write_text(_KILL_SCRIPT.format(tests=str(TESTS), run=str(run_dir)))
    proc = subprocess.Popen([sys.executable, str(script)], stderr=subprocess.PIPE)
    kill_9_after(run_dir, 2, proc)
    before = open_run(run_dir)
    assert before.status == "interrupted"  # journaled as running, but its process is gone
    done_before = completed(before)
    assert len(done_before) >= 2

    ex = FakeExecutor()
    s = resume(run_dir, proposer=FakeProposer(sleep=0.01, executor=ex), executor=ex)
    r = s.result
    assert r.status == "completed" and r.stop_reason == "budget"
    assert len(r.nodes) == 8 and all(n.completed for n in r.nodes)
    for i, n in done_before.items():
        assert same(r.node(i), n)  # kept as it was, not re-evaluated
    rerun = {int(job.split(":")[1]) for job, _ in ex.started}
    assert not rerun & set(done_before)
    assert len(ex.started) == 8 - len(done_before)
    assert open_run(run_dir).status == "completed"


def test_api_key_never_reaches_reprs_or_settings(tmp_path, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)  # only the option carries it
    ex = FakeExecutor()
    s = search(TASK, budget=2, branches=1, proposer=FakeProposer(executor=ex), executor=ex,
               run_dir=tmp_path / "run", proposer_options={"api_key": FAKE_KEY})
    shown = [repr(s), repr(s.result), json.dumps(s.settings), json.dumps(s.result.to_dict()),
             repr(open_run(tmp_path / "run"))]
    assert not any(FAKE_KEY in text for text in shown)


def test_journal_connection_is_closed_when_the_search_ends(tmp_path):
    import sqlite3

    ex = FakeExecutor()
    s = search(TASK, budget=2, proposer=FakeProposer(executor=ex), executor=ex,
               run_dir=tmp_path / "run")
    assert s.done
    with pytest.raises(sqlite3.ProgrammingError):
        s._runner.journal._db.execute("SELECT 1")
    assert open_run(tmp_path / "run").stop_reason == "budget"  # still readable by others


def test_setup_errors_are_search_errors(tmp_path, monkeypatch):
    with pytest.raises(SearchError, match="bad device 'gpu'"):
        search(TASK, budget=1, proposer=FakeProposer(), executor="local", device="gpu",
               run_dir=tmp_path / "a")
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(SearchError, match="ANTHROPIC_API_KEY"):
        search(TASK, budget=1, proposer="anthropic", executor=FakeExecutor(),
               run_dir=tmp_path / "b")
    # a journal file without its search record (a start that died at once)
    Journal.for_run(tmp_path / "c").close()
    with pytest.raises(SearchError, match="no search record"):
        open_run(tmp_path / "c")
    with pytest.raises(SearchError, match="no search record"):
        resume(tmp_path / "c", proposer=FakeProposer(), executor=FakeExecutor())


def test_a_failed_resume_shuts_down_the_executor_it_made(tmp_path, monkeypatch):
    import nimm_jupyter.execution.factory as factory

    ex = FakeExecutor()
    search(TASK, budget=1, proposer=FakeProposer(executor=ex), executor=ex,
           run_dir=tmp_path / "run")
    made: list[FakeExecutor] = []
    shut: list[FakeExecutor] = []

    class Tracked(FakeExecutor):
        def shutdown(self) -> None:
            shut.append(self)
            super().shutdown()

    def fake_make(name, **kw):
        made.append(Tracked())
        return made[-1]

    class BadRestore(FakeProposer):
        def restore(self, nodes):
            raise RuntimeError("restore failed")

    monkeypatch.setattr(factory, "make_executor", fake_make)
    with pytest.raises(SearchError, match="TrainConfig"):
        resume(tmp_path / "run", proposer=FakeProposer(), train="not a config")
    assert made == []  # a bad train is refused before an executor is made
    with pytest.raises(RuntimeError, match="restore failed"):
        resume(tmp_path / "run", proposer=BadRestore())
    assert len(made) == 1 and shut == made
    ex2 = FakeExecutor()  # and the run dir's lock was released
    resume(tmp_path / "run", budget=2, proposer=FakeProposer(executor=ex2), executor=ex2)
    assert len(ex2.started) == 1

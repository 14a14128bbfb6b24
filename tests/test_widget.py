"""SearchWidget: state from a stream of (fake) search events, throttling, batching, clicks,
Stop/Export messages. ``FakeSearch`` (also used by test_magics.py) mimics the Search API."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from nimm_jupyter.modeling.result import EvalResult, SplitScores, Status
from nimm_jupyter.search.events import Event, EventBus
from nimm_jupyter.search.node import Node

pytestmark = pytest.mark.timeout(60)

PRIOR = '''import torch
from torch import nn
from nimm_jupyter.blocks import Positive


class Model(nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.rho = Positive(0.1)

    def forward(self, y_context, u, t):
        return y_context[:, -1:].repeat(1, t.shape[0] - y_context.shape[1], 1) * self.rho()
'''


class FakeSearch:
    """Publishes the events a real search would, from a background thread.

    Node ``fail`` ids end with a runtime error; the val RMSE of node ``i`` is ``vals[i]``.
    ``step`` seconds pass per node; ``stop()`` ends the run early (reason ``stopped``).
    """

    def __init__(self, run_dir: Path, n_nodes: int = 5, step: float = 0.01,
                 fail: tuple[int, ...] = (2,), vals: list[float] | None = None,
                 progress: int = 5, task_name: str = "lung_cancer", settings: dict | None = None):
        self.run_id = Path(run_dir).name
        self.run_dir = Path(run_dir)
        self.task_name = task_name
        self.task = None
        self.settings = settings if settings is not None else {"budget": n_nodes, "task_options": {}}
        self.n_nodes, self.step, self.fail, self.progress = n_nodes, step, set(fail), progress
        self.vals = vals or [1.0 / (i + 1) for i in range(n_nodes)]
        self._nodes: dict[int, Node] = {}
        self._bus = EventBus()
        self._stop = threading.Event()
        self._finished = threading.Event()
        self.stop_calls = 0
        self.stop_reason: str | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    # -- Search API ----------------------------------------------------------------------
    def start(self) -> "FakeSearch":
        self._thread.start()
        return self

    def subscribe(self, fn):
        return self._bus.subscribe(fn)

    def stop(self, timeout: float = 2.0) -> None:
        self.stop_calls += 1
        self._stop.set()
        self._finished.wait(timeout)

    @property
    def done(self) -> bool:
        return self._finished.is_set()

    def wait(self, timeout: float | None = None):
        self._finished.wait(timeout)
        return self

    @property
    def result(self):
        return self

    @property
    def nodes(self) -> list[Node]:
        return [self._nodes[k] for k in sorted(self._nodes)]

    @property
    def best(self) -> Node | None:
        ok = [n for n in self.nodes if n.ok]
        return min(ok, key=lambda n: n.score) if ok else None

    def status(self) -> dict:
        nodes = self.nodes
        states = [n.state for n in nodes]
        best = self.best
        return {"evaluated": sum(n.completed for n in nodes), "failed": states.count("failed"),
                "running": states.count("running"), "pending": states.count("pending"),
                "tokens": 10 * len(nodes), "cost": 0.0, "elapsed": 1.0,
                "best_val": best.rmse("val") if best else None,
                "best_node": best.id if best else None, "budget": self.n_nodes,
                "stop_reason": self.stop_reason}

    # -- the fake run --------------------------------------------------------------------
    def emit(self, type_: str, **data) -> None:
        self._bus.publish(Event(type=type_, run_id=self.run_id, data=data))

    def make_result(self, i: int) -> EvalResult:
        if i in self.fail:
            return EvalResult.failure(Status.RUNTIME_ERROR, f"line 3: boom in node {i}")
        v = self.vals[i]
        return EvalResult(
            status=Status.OK, train=SplitScores(v * 0.9, v * 0.09), val=SplitScores(v, v / 10),
            test=SplitScores(v * 1.1, v / 9), parameters={"rho": 0.1 + i},
            loss_curve=[{"epoch": e, "train": 1.0 / (e + 1), "val": 1.2 / (e + 1)} for e in range(30)],
            n_parameters=3, epochs=30)

    def _run(self) -> None:
        self.emit("search_started")
        reason = "budget"
        best = None
        for i in range(self.n_nodes):
            if self._stop.is_set():
                reason = "stopped"
                break
            parent = None if i < 2 else i - 2
            node = Node(id=i, parent=parent, branch=i % 2, operator="draft" if i < 2 else "refine",
                        strategy=f"strategy {i % 2}", change=f"change {i}", code=PRIOR)
            self._nodes[i] = node
            self.emit("node_created", node=i, parent=parent, branch=i % 2, operator=node.operator,
                      strategy=node.strategy, change=node.change)
            node.state = "running"
            self.emit("node_started", node=i)
            for e in range(self.progress):
                self.emit("node_progress", node=i, epoch=e, train=1.0 / (e + 1), val=1.1 / (e + 1))
            if self._stop.wait(self.step):
                node.state = "pending"
                reason = "stopped"
                break
            node.result = self.make_result(i)
            node.state = "done" if node.result.ok else "failed"
            self.emit("node_finished", node=i, status=node.status, val=node.rmse("val"),
                      train=node.rmse("train"), message=node.message)
            if node.ok and (best is None or node.score < best.score):
                best = node
                self.emit("best_changed", node=i, val=node.rmse("val"))
        self.stop_reason = reason
        self._finished.set()
        self.emit("search_finished", reason=reason, best=best.id if best else None)


@pytest.fixture
def fake(tmp_path):
    return FakeSearch(tmp_path / "run-fake")


def _wait(cond, timeout=5.0):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def test_static_assets_have_stable_hooks():
    from nimm_jupyter.jupyter import widget

    js = (widget._STATIC / "widget.js").read_text()
    css = (widget._STATIC / "widget.css").read_text()
    for hook in ("nimm-node", "data-node-id", "nimm-stop", "nimm-export", "nimm-details",
                 '"stop"', '"export"', "export default"):
        assert hook in js, hook
    assert ".nimm-widget" in css and ".nimm-cross" in css


def test_widget_follows_event_stream(fake):
    from nimm_jupyter.jupyter.widget import SearchWidget

    w = SearchWidget(fake)
    fake.start()
    assert _wait(lambda: w.finished)
    nodes = {n["id"]: n for n in w.nodes}
    assert sorted(nodes) == [0, 1, 2, 3, 4]
    assert nodes[2]["state"] == "failed" and nodes[2]["status"] == "runtime_error"
    assert "boom" in nodes[2]["message"]
    assert nodes[4]["state"] == "done" and nodes[4]["val"] == pytest.approx(0.2)
    assert nodes[3]["parent"] == 1 and nodes[3]["branch"] == 1
    assert w.best_id == 4
    vals = [v for _, v in w.best_so_far]
    assert vals == sorted(vals, reverse=True) and vals[-1] == pytest.approx(0.2)
    assert [n for n, _ in w.best_so_far] == sorted(n for n, _ in w.best_so_far)
    assert {b["id"] for b in w.branches} == {0, 1}
    assert w.counters["evaluated"] == 5 and w.counters["failed"] == 1
    assert "4" in w.curves and len(w.curves["4"]) == 30  # the best node's full curve
    assert "finished" in w.message


def test_updates_are_throttled_and_batched(tmp_path):
    from nimm_jupyter.jupyter.widget import SearchWidget

    fake = FakeSearch(tmp_path / "run-t", n_nodes=1, step=0.0, progress=0)
    w = SearchWidget(fake)
    sent: list[dict] = []
    w.send_state = lambda key=None: sent.append(key)  # what hold_sync flushes
    start_flushes = w.flushes
    fake._nodes[0] = Node(id=0, parent=None, branch=0, operator="draft", code=PRIOR)
    fake.emit("node_created", node=0, parent=None, branch=0, operator="draft", strategy="s", change="c")
    fake.emit("node_started", node=0)
    t0 = time.monotonic()
    for e in range(600):
        fake.emit("node_progress", node=0, epoch=e, train=1.0, val=1.0)
    elapsed = time.monotonic() - t0
    time.sleep(0.35)  # let the trailing flush happen
    flushes = w.flushes - start_flushes
    assert 1 <= flushes <= elapsed * w.max_rate + 3
    assert 1 <= len(sent) <= flushes  # at most one batched message per flush
    assert all(isinstance(k, (list, tuple, set, dict)) or k is None or len(k) > 1 for k in sent)
    # the newest point always survives thinning, and the curve stays bounded
    pts = w.curves["0"]
    assert pts[-1]["epoch"] == 599 and len(pts) <= 200


def test_click_fills_details(fake):
    from nimm_jupyter.jupyter.widget import SearchWidget

    w = SearchWidget(fake)
    fake.start()
    assert _wait(lambda: w.finished)
    w.selected = 3
    d = w.details
    assert d["id"] == 3 and d["change"] == "change 3" and "class Model" in d["code"]
    assert d["metrics"]["val_rmse"] == pytest.approx(0.25)
    assert "test_rmse" not in d["metrics"]
    assert d["params"] == {"rho": pytest.approx(3.1)}
    assert d["error"] == ""
    assert "3" in w.curves and len(w.curves["3"]) == 30  # from the result's loss curve
    w.selected = 2
    assert "boom" in w.details["error"]


def test_stop_message_stops_search(tmp_path):
    from nimm_jupyter.jupyter.widget import SearchWidget

    fake = FakeSearch(tmp_path / "run-s", n_nodes=200, step=0.05)
    w = SearchWidget(fake)
    fake.start()
    assert _wait(lambda: len(fake.nodes) >= 2)
    t0 = time.time()
    w._on_custom_msg(w, {"action": "stop"}, [])
    assert _wait(lambda: fake.done, timeout=2.0)
    assert time.time() - t0 < 2.0 and fake.stop_calls == 1
    assert _wait(lambda: w.finished)
    assert len(w.nodes) < 200


def test_export_message_calls_exporter(fake):
    from nimm_jupyter.jupyter.widget import SearchWidget

    calls = []
    w = SearchWidget(fake, on_export=lambda ids: calls.append(ids) or f"exported {ids}")
    w._on_custom_msg(w, {"action": "export"}, [])
    assert calls == [] and "nothing to export" in w.message
    fake.start()
    assert _wait(lambda: w.finished)
    w._on_custom_msg(w, {"action": "export"}, [])
    assert calls == [[4]] and w.message == "exported [4]"

    def broken(ids):
        raise RuntimeError("disk full")

    w.on_export = broken
    w._on_custom_msg(w, {"action": "export"}, [])
    assert w.message == "export failed: disk full"


def test_widget_of_finished_result_replays_state(fake):
    from nimm_jupyter.jupyter.widget import SearchWidget

    fake.start()
    assert _wait(lambda: fake.done)

    from nimm_jupyter.search.results import SearchResult

    snapshot = SearchResult(  # a finished result: no subscribe, no stop
        run_id=fake.run_id, run_dir=fake.run_dir, task_name="lung_cancer", best=fake.best,
        nodes=fake.nodes, counts={}, tokens=0, cost=0.0, wall_time=0.0, stop_reason="budget",
        status="completed")

    w = SearchWidget(snapshot)
    assert w.finished and w.best_id == 4 and len(w.nodes) == 5
    assert w.best_so_far[-1][1] == pytest.approx(0.2)
    assert {n["id"]: n["state"] for n in w.nodes}[2] == "failed"


def test_watch_shows_widget_for_a_finished_search(fake, capsys):
    from nimm_jupyter.jupyter import watch

    fake.start()
    assert _wait(lambda: fake.done)
    w = watch(fake, summary=False)
    assert w.finished and w.best_id == 4
    assert "live widget" in capsys.readouterr().out  # plain IPython shows the text repr


def test_strategy_title_accepts_plain_strings_and_objects():
    from nimm_jupyter.jupyter.widget import _strategy_title
    from nimm_jupyter.proposers.base import Strategy

    assert _strategy_title("neural growth-rate correction") == "neural growth-rate correction"
    assert _strategy_title(Strategy("a title", "desc")) == "a title"
    assert _strategy_title({"title": "t"}) == "t"
    assert _strategy_title(None) == ""


def test_stop_marks_unfinished_nodes_cancelled_and_says_how_to_resume(tmp_path):
    from nimm_jupyter.jupyter.widget import SearchWidget

    fake = FakeSearch(tmp_path / "run-c", n_nodes=50, step=1.5)
    w = SearchWidget(fake)
    fake.start()
    assert _wait(lambda: any(n["state"] == "running" for n in w.nodes))
    w.stop()
    assert _wait(lambda: w.finished)
    states = {n["id"]: n["state"] for n in w.nodes}
    assert "running" not in states.values() and "pending" not in states.values()
    assert list(states.values()).count("cancelled") == 1
    assert w.end_state == "stopped" and w.counters["cancelled"] == 1
    assert "search stopped" in w.message and "1 unfinished node cancelled" in w.message
    assert str(fake.run_dir) in w.message and f"%nimm_search --resume {fake.run_dir}" in w.message


def test_ping_is_answered(fake):
    from nimm_jupyter.jupyter.widget import SearchWidget

    w = SearchWidget(fake)
    sent = []
    w.send = lambda content, buffers=None: sent.append(content)
    w._on_custom_msg(w, {"action": "ping", "seq": 7}, [])
    assert sent == [{"type": "pong", "seq": 7}]


def test_display_bundle_carries_a_static_snapshot(fake):
    from nimm_jupyter.jupyter.widget import SEARCH_VIEW_MIME, SearchWidget

    w = SearchWidget(fake)
    data = w._repr_mimebundle_()
    data = data[0] if isinstance(data, tuple) else data
    assert "application/vnd.jupyter.widget-view+json" in data
    assert "no nodes yet" in data["text/html"] and "running" in data["text/html"]
    # the lab extension's renderer picks the live view or this snapshot (searchview.ts)
    assert data[SEARCH_VIEW_MIME] == {"run_id": str(fake.run_id)}
    source = (Path(__file__).parents[1] / "labextension" / "src" / "searchview.ts").read_text()
    assert f"SEARCH_VIEW_MIME = '{SEARCH_VIEW_MIME}'" in source
    fake.start()
    assert _wait(lambda: w.finished)
    data = w._repr_mimebundle_()
    data = data[0] if isinstance(data, tuple) else data
    html = data["text/html"]
    assert html.count("<circle r=\"8\"") == 5 and "<svg" in html and "finished (budget)" in html
    assert "change 4" in html and "0: strategy 0" in html  # changes and lane titles
    assert html.index("<td>4 ★</td>") < html.index("<td>3</td>")  # ranked by val RMSE
    assert "test rmse" not in html.lower()  # no test scores in a live view


def test_counters_progress_and_time_left(fake):
    from nimm_jupyter.jupyter.progress import time_left
    from nimm_jupyter.jupyter.widget import SearchWidget

    assert time_left([], 3, 1) is None and time_left([1.0], 0, 1) == 0.0
    assert time_left([1.0, 3.0, 2.0], 5, 2) == pytest.approx(2.0 * 3)
    w = SearchWidget(fake)
    c = w.counters
    assert c["budget"] == 5 and c["evaluated"] == 0
    assert c["spend"] is False  # no tokens spent and no LLM proposer: no token counter
    fake.start()
    assert _wait(lambda: w.finished)
    assert w.counters["eta"] is None and w.counters["evaluated"] == 5
    assert w.counters["spend"] is True  # the fake spends 10 tokens a node


def test_details_diff_against_parent_and_notes(fake):
    from nimm_jupyter.jupyter.nodeview import code_diff, result_notes
    from nimm_jupyter.jupyter.widget import SearchWidget

    fake.start()
    assert _wait(lambda: fake.done)
    fake._nodes[3].code = PRIOR.replace("Positive(0.1)", "Positive(0.2)")
    w = SearchWidget(fake)
    w.selected = 3
    d = w.details
    assert d["parent"] == 1
    assert "-        self.rho = Positive(0.1)" in d["diff"] and "+        self.rho = Positive(0.2)" in d["diff"]
    w.selected = 0
    assert w.details["diff"] == ""  # a root has no parent to compare with
    assert code_diff("a\n", "a\n", 1) == "(same code as the parent)"
    res = fake.make_result(1)
    assert result_notes(res) == {}  # every standard field has its own place
    res.notes = ["converged", "gtol reached"]  # a field a newer harness may add
    res.to_dict = lambda: {**EvalResult.to_dict(res), "notes": res.notes, "flags": {"ridge": True}}
    assert result_notes(res) == {"notes": "converged, gtol reached", "flags.ridge": "True"}


def test_summary_text_is_cut_at_words_with_an_ellipsis():
    from nimm_jupyter.jupyter.summary import end_state, shorten

    assert shorten("short", 20) == "short"
    cut = shorten("draft (neural growth-rate correction): growth law=exponential", 40)
    assert cut == "draft (neural growth-rate correction)…" and len(cut) <= 40
    assert end_state(False, None) == "running" and end_state(True, "stopped") == "stopped"
    assert end_state(True, "budget") == "finished (budget)"
    assert end_state(True, "error: ValueError: x") == "failed (error: ValueError: x)"


def test_large_tree_snapshot_stays_bounded(tmp_path):
    from nimm_jupyter.jupyter.snapshot import layout, tree_svg
    from nimm_jupyter.jupyter.widget import SearchWidget

    fake = FakeSearch(tmp_path / "run-big", n_nodes=150, step=0.0, progress=1, fail=(7, 80))
    w = SearchWidget(fake)
    fake.start()
    assert _wait(lambda: w.finished, timeout=20)
    rows = w.nodes
    assert len(rows) == 150
    pos, lanes, width, height = layout(rows)
    assert len(set(pos.values())) == 150  # no two nodes drawn on the same spot
    assert [b for b, _ in lanes] == [0, 1]
    svg = tree_svg(rows, w.branches, w.best_id)
    assert svg.count('<circle r="8"') == 150 and svg.count("M-4,-4L4,4") == 2
    assert len(svg) < 150 * 700  # a static output a notebook can carry


def test_html_view_updates_in_place_until_the_end(fake, monkeypatch):
    from nimm_jupyter.jupyter import present

    shown = []

    class Handle:
        def update(self, obj):
            shown.append(obj.data)

    def fake_display(obj, display_id=False):
        shown.append(obj.data)
        return Handle()

    monkeypatch.setattr(present, "display", fake_display)
    view = present.HtmlView(fake)
    assert "no nodes yet" in shown[0]
    fake.start()
    assert _wait(lambda: fake.done and view._unsubscribe is None)
    assert view.updates >= 2 and len(shown) == view.updates + 1  # throttled, final always
    final = shown[-1]
    assert final.count('<circle r="8"') == 5 and "finished (budget)" in final
    assert "<td>4 ★</td>" in final and f"%nimm_search --resume {fake.run_dir}" in final


def test_node_panel_shows_intervention_error_beside_validation():
    from nimm_jupyter.jupyter.nodeview import node_details
    from nimm_jupyter.modeling.result import EvalResult, SplitScores, Status
    from nimm_jupyter.search.tree import Node

    res = EvalResult(status=Status.OK, val=SplitScores(0.5, 0.1),
                     scenarios={"no_treatment": SplitScores(7.5, 1.2)})
    d = node_details(Node(id=4, parent=None, branch=0, operator="draft", result=res))
    assert d["metrics"]["val_rmse"] == 0.5
    assert d["metrics"]["intervention no_treatment: RMSE"] == 7.5
    assert not any(k.startswith("scenarios") for k in d["notes"])  # not dumped again as notes


def test_snapshot_lane_titles_are_readable_in_full():
    """Long strategy titles wrap inside their lane (no overlap with the next one); a title
    too long even for that ends in an ellipsis and is written out in full below the tree."""
    import re

    from nimm_jupyter.jupyter.snapshot import (CHAR_W, LABEL_CHARS, LABEL_LINES, snapshot_html,
                                               tree_svg)

    medium = "a neural residual on the derivative of the infected compartment"
    huge = ("a state- and input-dependent modulation of the growth rate by a small network "
            "of the log-volume and the dose, refined one hyperparameter at a time")
    branches = [{"id": 0, "strategy": medium}, {"id": 1, "strategy": huge},
                {"id": 2, "strategy": ""}]
    nodes = [{"id": i, "parent": None, "branch": i, "state": "done", "val": 1.0 + i,
              "operator": "draft", "status": "ok"} for i in range(3)]
    svg = tree_svg(nodes, branches, 0)
    lanes = re.findall(r'<text class="nimm-snapshot-lane"[^>]*>(.*?)<title>(.*?)</title></text>', svg)
    assert len(lanes) == 3
    lines = [re.findall(r'<tspan x="(\d+)"[^>]*>(.*?)</tspan>', spans) for spans, _ in lanes]
    # the medium title is all there, wrapped; the huge one is cut with "…" after 3 lines
    assert " ".join(t for _, t in lines[0]) == f"0: {medium}" and len(lines[0]) > 1
    assert len(lines[1]) == LABEL_LINES and lines[1][-1][1].endswith("…")
    assert [t for _, t in lines[2]] == ["2: branch 2"]
    assert all(len(t) <= LABEL_CHARS for lane in lines for _, t in lane)
    # every hover tooltip names the branch and its full title
    assert [tip for _, tip in lanes] == [f"branch 0: {medium}", f"branch 1: {huge}",
                                         "branch 2: branch 2"]
    # each label ends before the next lane begins
    starts = [int(lane[0][0]) for lane in lines]
    for lane, nxt in zip(lines, starts[1:]):
        assert int(lane[0][0]) + max(len(t) for _, t in lane) * CHAR_W < nxt
    # the nodes sit below the last label line
    label_bottom = 14 + 12 * (LABEL_LINES - 1)
    assert all(float(y) - 12 > label_bottom
               for y in re.findall(r'<g transform="translate\(\d+,(\d+)\)">', svg))
    page = snapshot_html({"nodes": nodes, "branches": branches, "best_id": 0})
    key = re.search(r'<p class="nimm-snapshot-lanes">(.*?)</p>', page).group(1)
    assert huge in key and medium not in key  # only what the tree had to cut

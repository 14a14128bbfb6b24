"""Live search widget (anywidget): branch tree, loss curves, best-so-far, details, Stop/Export.

Search events arrive on the search's thread. They only update plain Python state under a
lock; a throttled flush (at most :attr:`SearchWidget.max_rate` per second) copies that
state into the synced traitlets inside ``hold_sync()``, so the frontend gets one batched
message per flush. The widget never prints; everything it says goes through ``message``.
"""
from __future__ import annotations

import math
import pathlib
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

import anywidget
import traitlets

from ..proposers.base import Strategy
from ..export.cells import snapshot
from ..search.events import Event

if TYPE_CHECKING:
    from ..search.api import Search
    from ..search.node import Node
    from ..search.results import SearchResult

_STATIC = pathlib.Path(__file__).parent / "static"
MAX_CURVE_POINTS = 200  # per node; older points are thinned, never the latest one
MAX_CURVES = 8  # running nodes + selected + best


def _finite(x: Any) -> float | None:
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def node_status(node: "Node") -> str:
    """Evaluation status value of a Node, or its lifecycle state while it has no result."""
    return node.status


def node_summary(node: "Node") -> dict[str, Any]:
    """The widget's view of one Node (all JSON values)."""
    res = node.result
    status = node.status
    state = node.state
    if res is not None:
        state = "done" if status == "ok" else "failed"
    return {
        "id": int(node.id),
        "parent": None if node.parent is None else int(node.parent),
        "branch": int(node.branch or 0),
        "operator": node.operator or "",
        "strategy": node.strategy or "",
        "change": node.change or "",
        "state": state or "pending",
        "status": status,
        "val": _finite(res.val.rmse) if res is not None else None,
        "train": _finite(res.train.rmse) if res is not None else None,
        "message": node.message,
    }


def _strategy_title(strategy: Strategy | dict[str, Any] | str | None) -> str:
    """A strategy's title, whichever form an event carries it in."""
    if strategy is None:
        return ""
    if isinstance(strategy, str):
        return strategy
    if isinstance(strategy, dict):
        return str(strategy.get("title", ""))
    if isinstance(strategy, Strategy):
        return strategy.title
    return str(strategy)


def node_details(node: "Node") -> dict[str, Any]:
    """What the details panel shows for a selected node (no test scores: they are for the end)."""
    res = node.result
    d: dict[str, Any] = {
        "id": int(node.id),
        "branch": int(node.branch or 0),
        "operator": node.operator or "",
        "strategy": node.strategy or "",
        "change": node.change or "",
        "code": node.code or "",
        "status": node.status,
        "metrics": {},
        "params": {},
        "error": "",
        "tokens": int((node.tokens_in or 0) + (node.tokens_out or 0)),
        "cost": float(node.cost or 0.0),
    }
    if res is not None:
        d["metrics"] = {k: v for k, v in {
            "train_rmse": _finite(res.train.rmse),
            "val_rmse": _finite(res.val.rmse),
            "val_rmse_norm": _finite(res.val.rmse_norm),
            "epochs": int(res.epochs),
            "n_parameters": int(res.n_parameters),
            "wall_time": round(float(res.wall_time), 2),
        }.items() if v is not None}
        d["params"] = {k: v for k, v in ((k, _finite(v)) for k, v in res.parameters.items())
                       if v is not None}
        d["error"] = "" if res.ok else (res.message or res.status.value)
    elif d["status"] not in ("pending", "running"):
        d["error"] = node.message
    return d


def _thin(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if len(points) <= MAX_CURVE_POINTS:
        return points
    last = points[-1]
    return points[:-1:2] + [last]


class SearchWidget(anywidget.AnyWidget):
    """Live view of a running search (or a finished one / a ``SearchResult``).

    A ``Search`` is followed through its events until it ends; a ``SearchResult`` is a
    snapshot, shown as it is.

    ``on_export(node_ids) -> str`` is called when the Export button is pressed; its return
    value is shown as the widget's message. Without it the best model is written to
    ``<run_dir>/export.ipynb``.
    """

    _esm = _STATIC / "widget.js"
    _css = _STATIC / "widget.css"

    run_id = traitlets.Unicode("").tag(sync=True)
    task_name = traitlets.Unicode("").tag(sync=True)
    nodes = traitlets.List([]).tag(sync=True)
    branches = traitlets.List([]).tag(sync=True)
    best_id = traitlets.Int(None, allow_none=True).tag(sync=True)
    curves = traitlets.Dict({}).tag(sync=True)
    best_so_far = traitlets.List([]).tag(sync=True)
    counters = traitlets.Dict({}).tag(sync=True)
    selected = traitlets.Int(None, allow_none=True).tag(sync=True)
    details = traitlets.Dict({}).tag(sync=True)
    finished = traitlets.Bool(False).tag(sync=True)
    message = traitlets.Unicode("").tag(sync=True)

    max_rate = 5.0  # flushes per second

    def __init__(self, search: "Search | SearchResult",
                 on_export: Callable[[list[int]], str] | None = None, **kwargs: Any):
        from ..search.results import SearchResult

        super().__init__(**kwargs)
        self.search = search
        self._live = not isinstance(search, SearchResult)  # a snapshot has no events
        self.on_export = on_export
        self.flushes = 0  # number of batched syncs sent (tests, diagnostics)
        self._lock = threading.RLock()
        self._nodes: dict[int, dict[str, Any]] = {}
        self._curves: dict[int, list[dict[str, Any]]] = {}
        self._final_curves: set[int] = set()  # nodes whose curve came from their result
        self._best: tuple[int, float] | None = None
        self._best_so_far: list[list[float]] = []
        self._finished = False
        self._reason = ""
        self._last_flush = 0.0
        self._timer: threading.Timer | None = None
        self._started = time.time()
        self.run_id = str(search.run_id)
        self.task_name = snapshot(search).task_name
        self._replay(search)
        self._unsubscribe: Callable[[], None] | None = None
        if self._live and not self._finished:
            self._unsubscribe = search.subscribe(self.handle_event)
            if search.done:  # finished between replay and subscribe
                self._finished = True
        self.observe(self._on_selected, names="selected")
        self.on_msg(self._on_custom_msg)
        self.flush()

    def __repr__(self) -> str:  # the text/plain shown where widgets do not render
        return f"nimm search {self.run_id} ({self.task_name}): live widget"

    # -- state from the search -------------------------------------------------------
    def _replay(self, search: "Search | SearchResult") -> None:
        """Start from whatever the search already knows (a finished run, a late widget)."""
        done = []
        for node in sorted(search.nodes, key=lambda n: n.id):
            self._nodes[int(node.id)] = node_summary(node)
            if node.result is not None:
                done.append(node)
        done.sort(key=lambda n: (n.finished or 0.0, n.id))
        best_score = math.inf
        for i, node in enumerate(done, start=1):
            val = _finite(node.result.val.rmse) if node.ok else None
            score = node.score
            if val is not None and score < best_score:
                best_score, self._best = score, (int(node.id), val)
            self._best_so_far.append([i, self._best[1] if self._best else None])
        best = search.best
        if best is not None and best.result is not None:
            val = _finite(best.result.val.rmse)
            if val is not None:
                self._best = (int(best.id), val)
        self._finished = not self._live or search.done

    def handle_event(self, event: Event) -> None:
        """Subscriber for search events (runs on the search's thread)."""
        d = event.data
        with self._lock:
            t = event.type
            if t == "node_created":
                nid = int(d["node"])
                self._nodes[nid] = {
                    "id": nid,
                    "parent": None if d.get("parent") is None else int(d["parent"]),
                    "branch": int(d.get("branch") or 0),
                    "operator": str(d.get("operator", "")),
                    "strategy": _strategy_title(d.get("strategy", "")),
                    "change": str(d.get("change", "") or ""),
                    "state": "pending", "status": "pending",
                    "val": None, "train": None, "message": "",
                }
            elif t == "node_started":
                node = self._node(int(d["node"]))
                node["state"] = node["status"] = "running"
                self._curves[node["id"]] = []
            elif t == "node_progress":
                nid = int(d["node"])
                pts = self._curves.setdefault(nid, [])
                pts.append({"epoch": d.get("epoch"), "train": _finite(d.get("train")),
                            "val": _finite(d.get("val"))})
                self._curves[nid] = _thin(pts)
            elif t == "node_finished":
                node = self._node(int(d["node"]))
                status = str(d.get("status", ""))
                node.update(status=status, state="done" if status == "ok" else "failed",
                            val=_finite(d.get("val")), train=_finite(d.get("train")),
                            message=str(d.get("message", "") or ""))
                n_done = sum(1 for n in self._nodes.values() if n["state"] in ("done", "failed"))
                # The search ranks by normalised validation RMSE; a best_changed event that
                # follows this one corrects the entry just appended.
                self._best_so_far.append([n_done, self._best[1] if self._best else None])
            elif t == "best_changed":
                val = _finite(d.get("val"))
                if d.get("node") is not None and val is not None:
                    self._best = (int(d["node"]), val)
                    if self._best_so_far:
                        self._best_so_far[-1][1] = val
                    else:
                        self._best_so_far.append([1, val])
            elif t == "search_finished":
                self._finished = True
                self._reason = str(d.get("reason", "") or "")
        if event.type == "search_finished":
            self.flush()
        else:
            self._schedule()

    def _node(self, nid: int) -> dict[str, Any]:
        if nid not in self._nodes:  # an event for a node we never saw created
            self._nodes[nid] = {"id": nid, "parent": None, "branch": 0, "operator": "",
                                "strategy": "", "change": "", "state": "pending",
                                "status": "pending", "val": None, "train": None, "message": ""}
        return self._nodes[nid]

    # -- throttled sync --------------------------------------------------------------
    def _schedule(self) -> None:
        with self._lock:
            if self._timer is not None:
                return  # a flush is already due; it will carry this change too
            wait = self._last_flush + 1.0 / self.max_rate - time.monotonic()
            if wait <= 0:
                pass
            else:
                self._timer = threading.Timer(wait, self._timer_flush)
                self._timer.daemon = True
                self._timer.start()
                return
        self.flush()

    def _timer_flush(self) -> None:
        with self._lock:
            self._timer = None
        self.flush()

    def _visible_curves(self) -> dict[str, list[dict[str, Any]]]:
        keep = [nid for nid, n in self._nodes.items() if n["state"] == "running"]
        for nid in (self.selected, self._best[0] if self._best else None):
            if nid is not None and nid not in keep:
                keep.append(nid)
        out: dict[str, list[dict[str, Any]]] = {}
        for nid in keep[-MAX_CURVES:]:
            pts = self._curves.get(nid)
            finished = self._nodes.get(nid, {}).get("state") in ("done", "failed")
            if finished and nid not in self._final_curves:
                # Progress events are samples; a finished node's own curve is complete.
                pts = self._curve_from_result(nid) or pts
            if pts:
                out[str(nid)] = list(pts)
        return out

    def _curve_from_result(self, nid: int) -> list[dict[str, Any]]:
        node = self._find_node(nid)
        res = node.result if node is not None else None
        if res is None or not res.loss_curve:
            return []
        pts = [{"epoch": p.get("epoch"), "train": _finite(p.get("train")), "val": _finite(p.get("val"))}
               for p in res.loss_curve]
        while len(pts) > MAX_CURVE_POINTS:
            pts = _thin(pts)
        self._curves[nid] = pts
        self._final_curves.add(nid)
        return pts

    def _counters(self) -> dict[str, Any]:
        status: dict[str, Any] = {}
        # a snapshot carries its totals; a live search is asked for its status
        tokens, cost, elapsed = 0, 0.0, 0.0
        if self._live:
            try:
                status = dict(self.search.status())
            except Exception:
                status = {}
        else:
            tokens, cost, elapsed = self.search.tokens, self.search.cost, self.search.wall_time
        states = [n["state"] for n in self._nodes.values()]
        return {
            "evaluated": int(status.get("evaluated", states.count("done") + states.count("failed"))),
            "failed": int(status.get("failed", states.count("failed"))),
            "running": int(status.get("running", states.count("running"))),
            "tokens": int(status.get("tokens", tokens or 0)),
            "cost": float(status.get("cost", cost or 0.0)),
            "elapsed": float(status.get("elapsed", elapsed or time.time() - self._started)),
        }

    def _branches(self) -> list[dict[str, Any]]:
        out: dict[int, dict[str, Any]] = {}
        for n in sorted(self._nodes.values(), key=lambda n: n["id"]):
            b = out.setdefault(n["branch"], {"id": n["branch"], "strategy": "", "n_nodes": 0,
                                             "best_val": None})
            b["n_nodes"] += 1
            if not b["strategy"] and n["strategy"]:
                b["strategy"] = n["strategy"]
            if n["val"] is not None and (b["best_val"] is None or n["val"] < b["best_val"]):
                b["best_val"] = n["val"]
        return [out[k] for k in sorted(out)]

    def flush(self) -> None:
        """Send the accumulated state now, as one batched update."""
        # One lock around copy *and* send: a timer flush and an event-thread flush must not
        # interleave their trait updates.
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            finished = self._finished
            self._last_flush = time.monotonic()
            self.flushes += 1
            with self.hold_sync():
                self.nodes = [dict(n) for _, n in sorted(self._nodes.items())]
                self.branches = self._branches()
                self.curves = self._visible_curves()
                self.best_so_far = [list(p) for p in self._best_so_far if p[1] is not None]
                self.best_id = self._best[0] if self._best else None
                self.counters = self._counters()
                if finished and not self.finished:
                    self.message = (f"search finished ({self._reason})" if self._reason
                                    else "search finished")
                self.finished = finished
                if self.selected is not None and self.selected in self._nodes:
                    self.details = self._details(self.selected)
        if finished:
            self.close_subscription()

    def close_subscription(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    # -- interaction -----------------------------------------------------------------
    def _find_node(self, nid: int) -> "Node | None":
        for node in self.search.nodes:
            if int(node.id) == nid:
                return node
        return None

    def _details(self, nid: int) -> dict[str, Any]:
        node = self._find_node(nid)
        if node is not None:
            return node_details(node)
        known = self._nodes.get(nid, {})
        return {"id": nid, "change": known.get("change", ""), "code": "", "status":
                known.get("status", ""), "metrics": {}, "params": {},
                "error": known.get("message", ""), "branch": known.get("branch", 0),
                "operator": known.get("operator", ""), "strategy": known.get("strategy", "")}

    def _on_selected(self, change: dict[str, Any]) -> None:
        nid = change["new"]
        if nid is None:
            self.details = {}
            return
        with self._lock, self.hold_sync():
            self.details = self._details(int(nid))
            self.curves = self._visible_curves()

    def _on_custom_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        action = content.get("action") if isinstance(content, dict) else None
        if action == "stop":
            self.stop()
        elif action == "export":
            self.export()

    def stop(self) -> None:
        """Stop the search (the Stop button)."""
        if self._live and not self._finished:
            self.search.stop()
            self.message = "stopping: running evaluations are cancelled, the journal is kept"

    def export(self, node_ids: list[int] | None = None) -> str:
        """Export the best (or given) nodes (the Export button); returns the message shown."""
        try:
            if node_ids is None:
                best = self._best[0] if self._best else None
                if best is None:
                    self.message = "nothing to export yet: no model has been evaluated successfully"
                    return self.message
                node_ids = [best]
            if self.on_export is not None:
                msg = self.on_export(node_ids)
            else:
                from ..export import export_notebook

                path = pathlib.Path(self.search.run_dir) / "export.ipynb"
                export_notebook(self.search, path, node_ids)
                msg = f"exported node {', '.join(map(str, node_ids))} to {path}"
        except Exception as exc:  # shown in the widget; the kernel must not see a traceback
            msg = f"export failed: {exc}"
        self.message = msg
        return msg

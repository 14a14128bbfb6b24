"""Live search widget (anywidget): branch tree, loss curves, best-so-far, details, Stop/Export.

Search events arrive on the search's thread. They only update plain Python state under a
lock; a throttled flush (at most :attr:`SearchWidget.max_rate` per second) copies that
state into the synced traitlets inside ``hold_sync()``, so the frontend gets one batched
message per flush (traits whose value did not change are not sent; the frontend redraws
only what changed). The widget never prints; everything it says goes through ``message``.
Its display bundle carries a static HTML snapshot beside the widget view (see
:mod:`.snapshot`), so a notebook saved without widget state still shows the tree.
"""
from __future__ import annotations

import math
import pathlib
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

import anywidget
import traitlets

from ..export.cells import snapshot
from ..search.events import Event
from .nodeview import (
    CANCELLED, branch_rows, curve_points, empty_row, finite, mark_cancelled, node_details,
    node_summary, rmse_unit, strategy_title, thin,
)
from .summary import end_state

if TYPE_CHECKING:
    from ..search.api import Search
    from ..search.node import Node
    from ..search.results import SearchResult

_STATIC = pathlib.Path(__file__).parent / "static"
# Rendered by this package's lab extension (labextension/src/searchview.ts): the live widget
# while its model exists, else the static snapshot, never ipywidgets' "model not found".
SEARCH_VIEW_MIME = "application/vnd.nimm-jupyter.search-view+json"
MAX_CURVES = 8  # running nodes + selected + best
# the names tests and other modules reach through this module
_finite, _strategy_title, node_summary, node_details = finite, strategy_title, node_summary, node_details


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
    run_dir = traitlets.Unicode("").tag(sync=True)
    resume = traitlets.Unicode("").tag(sync=True)  # the cell line that continues the run
    unit = traitlets.Unicode("").tag(sync=True)  # unit of the original-scale RMSE ("" unknown)
    nodes = traitlets.List([]).tag(sync=True)
    branches = traitlets.List([]).tag(sync=True)
    best_id = traitlets.Int(None, allow_none=True).tag(sync=True)
    curves = traitlets.Dict({}).tag(sync=True)
    best_so_far = traitlets.List([]).tag(sync=True)
    counters = traitlets.Dict({}).tag(sync=True)
    selected = traitlets.Int(None, allow_none=True).tag(sync=True)
    details = traitlets.Dict({}).tag(sync=True)
    finished = traitlets.Bool(False).tag(sync=True)
    end_state = traitlets.Unicode("running").tag(sync=True)  # running | stopped | finished (...)
    message = traitlets.Unicode("").tag(sync=True)
    # the node panel's what-if (computed in the sandbox): the inputs it may change, and the
    # last answer ({"node", "target", "time", "series": {label: values}} or {"error"})
    what_if_inputs = traitlets.List([]).tag(sync=True)
    what_if = traitlets.Dict({}).tag(sync=True)

    max_rate = 5.0  # flushes per second

    def __init__(self, search: "Search | SearchResult",
                 on_export: Callable[[list[int]], str] | None = None, **kwargs: Any):
        from ..search.results import SearchResult
        from .runs import resume_command

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
        self._display: Any = None  # the display handle whose snapshot is updated at the end
        self.run_id = str(search.run_id)
        self.task_name = snapshot(search).task_name
        self.run_dir = str(search.run_dir)
        self.resume = resume_command(search.run_dir)
        # only a task already at hand (a live search's): a snapshot would rebuild it
        self.unit = rmse_unit(getattr(search, "task", None) if self._live else None)
        task = getattr(search, "task", None) if self._live else None
        if task is not None and str(getattr(task.kind, "value", task.kind)) == "trajectory":
            self.what_if_inputs = list(task.input_names)
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

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """The widget view plus a static snapshot (text/html) for where widgets cannot
        render: nbconvert HTML, GitHub, a notebook reopened without widget state; and
        :data:`SEARCH_VIEW_MIME`, with which JupyterLab shows the snapshot instead of an
        error when the widget's model is gone."""
        from .snapshot import snapshot_html

        bundle = super()._repr_mimebundle_(**kwargs)
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        if data is None:
            return bundle
        with self._lock:
            data["text/html"] = snapshot_html(self._snapshot_state())
        data[SEARCH_VIEW_MIME] = {"run_id": self.run_id}
        return bundle

    def _snapshot_state(self) -> dict[str, Any]:
        from .snapshot import view_state

        return view_state(self.search, self._nodes, self._best[0] if self._best else None,
                          self._counters(), self._end_state(), self.unit)

    def show(self) -> Any:
        """Display the widget with a display id, so the end-of-search snapshot replaces the
        one shown at the start; returns the display handle."""
        from IPython.display import display

        self._display = display(self, display_id=True)
        return self._display

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
            val = finite(node.result.val.rmse) if node.ok else None
            score = node.score
            if val is not None and score < best_score:
                best_score, self._best = score, (int(node.id), val)
            self._best_so_far.append([i, self._best[1] if self._best else None])
        best = search.best
        if best is not None and best.result is not None:
            val = finite(best.result.val.rmse)
            if val is not None:
                self._best = (int(best.id), val)
        self._finished = not self._live or search.done
        if self._finished:
            self._reason = str(getattr(search, "stop_reason", None) or "")
            mark_cancelled(self._nodes)

    def handle_event(self, event: Event) -> None:
        """Subscriber for search events (runs on the search's thread)."""
        d = event.data
        with self._lock:
            t = event.type
            if t == "node_created":
                nid = int(d["node"])
                self._nodes[nid] = dict(
                    empty_row(nid), parent=None if d.get("parent") is None else int(d["parent"]),
                    branch=int(d.get("branch") or 0), operator=str(d.get("operator", "")),
                    strategy=strategy_title(d.get("strategy", "")),
                    change=str(d.get("change", "") or ""))
            elif t == "node_started":
                node = self._node(int(d["node"]))
                node["state"] = node["status"] = "running"
                self._curves[node["id"]] = []
            elif t == "node_progress":
                nid = int(d["node"])
                pts = self._curves.setdefault(nid, [])
                pts.append({"epoch": d.get("epoch"), "train": finite(d.get("train")),
                            "val": finite(d.get("val"))})
                self._curves[nid] = thin(pts)
            elif t == "node_finished":
                node = self._node(int(d["node"]))
                status = str(d.get("status", ""))
                node.update(status=status, state="done" if status == "ok" else "failed",
                            val=finite(d.get("val")), train=finite(d.get("train")),
                            message=str(d.get("message", "") or ""))
                n_done = sum(1 for n in self._nodes.values() if n["state"] in ("done", "failed"))
                # The search ranks by normalised validation RMSE; a best_changed event that
                # follows this one corrects the entry just appended.
                self._best_so_far.append([n_done, self._best[1] if self._best else None])
            elif t == "best_changed":
                val = finite(d.get("val"))
                if d.get("node") is not None and val is not None:
                    self._best = (int(d["node"]), val)
                    if self._best_so_far:
                        self._best_so_far[-1][1] = val
                    else:
                        self._best_so_far.append([1, val])
            elif t == "search_finished":
                self._finished = True
                self._reason = str(d.get("reason", "") or "")
                mark_cancelled(self._nodes)  # stopped mid-evaluation: they re-run on resume
        if event.type == "search_finished":
            self.flush()
            self._update_snapshot()
        else:
            self._schedule()

    def _node(self, nid: int) -> dict[str, Any]:
        if nid not in self._nodes:  # an event for a node we never saw created
            self._nodes[nid] = empty_row(nid)
        return self._nodes[nid]

    def _end_state(self) -> str:
        return end_state(self._finished, self._reason)

    def _update_snapshot(self) -> None:
        """Replace the snapshot shown beside the widget with the final one."""
        if self._display is not None:
            try:
                self._display.update(self)
            except Exception:  # the display is gone (cell cleared): nothing to update
                pass

    # -- throttled sync --------------------------------------------------------------
    def _schedule(self) -> None:
        with self._lock:
            if self._timer is not None:
                return  # a flush is already due; it will carry this change too
            wait = self._last_flush + 1.0 / self.max_rate - time.monotonic()
            if wait > 0:
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
        pts = curve_points(res.loss_curve)
        self._curves[nid] = pts
        self._final_curves.add(nid)
        return pts

    def _counters(self) -> dict[str, Any]:
        from .progress import counters

        return counters(self.search, self._live, self._nodes, self._started)

    def _branches(self) -> list[dict[str, Any]]:
        return branch_rows(self._nodes.values())

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
                self.end_state = self._end_state()
                if finished and not self.finished:
                    self.message = self._final_message()
                self.finished = finished
                if self.selected is not None and self.selected in self._nodes:
                    self.details = self._details(self.selected)
        if finished:
            self.close_subscription()

    def _final_message(self) -> str:
        n_cancelled = sum(1 for n in self._nodes.values() if n["state"] == CANCELLED)
        text = f"search {self._end_state()}"
        if n_cancelled:
            text += f"; {n_cancelled} unfinished node{'s' * (n_cancelled > 1)} cancelled"
        if self._live:
            text += f" · run dir {self.run_dir} · continue with `{self.resume}`"
        return text

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
            parent = self._find_node(int(node.parent)) if node.parent is not None else None
            return node_details(node, parent)
        known = self._nodes.get(nid, {})
        return {"id": nid, "change": known.get("change", ""), "code": "", "diff": "",
                "status": known.get("status", ""), "metrics": {}, "params": {}, "notes": {},
                "error": known.get("message", ""), "branch": known.get("branch", 0),
                "parent": known.get("parent"), "operator": known.get("operator", ""),
                "strategy": known.get("strategy", "")}

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
        elif action == "ping":  # the frontend checks that this kernel still answers
            self.send({"type": "pong", "seq": content.get("seq")})
        elif action == "what_if":
            threading.Thread(target=self.run_what_if, kwargs={"request": content},
                             name="nimm-what-if", daemon=True).start()

    def run_what_if(self, request: dict[str, Any]) -> dict[str, Any]:
        """The node panel's what-if (a ``what_if`` message from the frontend: ``node``,
        ``trajectory``, ``split``, ``input``, ``op`` = scale | shift | zero, ``value``),
        computed in jailed jobs (:func:`~nimm_jupyter.search.whatif.sandbox_what_if`);
        the answer goes to the ``what_if`` trait (the first target's series) and is returned."""
        from ..search.whatif import sandbox_what_if

        nid = request.get("node")
        self.what_if = {"node": nid, "running": True}
        try:
            name, op = str(request.get("input", "")), str(request.get("op", "zero"))
            value = float(request.get("value", 0.0) or 0.0)
            change = ({"zero": [name]} if op == "zero" else {"scale": {name: value}}
                      if op == "scale" else {"shift": {name: int(round(value))}})
            frame = sandbox_what_if(snapshot(self.search), int(nid),
                                    int(request.get("trajectory", 0) or 0),
                                    str(request.get("split", "test")), **change)
            target = next(c for c in frame.columns if f"{c} model" in frame.columns)
            series = {label: [finite(v) for v in frame[f"{target} {label}".strip()]]
                      for label in ("", "model", "model what-if", "against", "against what-if")
                      if f"{target} {label}".strip() in frame.columns}
            series["observed"] = series.pop("")
            answer = {"node": nid, "target": target, "time": [finite(v) for v in frame["time"]],
                      "series": series, "change": f"{op} {name}"
                      + ("" if op == "zero" else f" by {value:g}")}
        except Exception as exc:  # shown in the panel; the kernel must not see a traceback
            answer = {"node": nid, "error": f"what-if failed: {exc}"}
        self.what_if = answer
        return answer

    def stop(self) -> None:
        """Stop the search (the Stop button)."""
        if self._live and not self._finished:
            # said before stopping: the final flush (which may come before stop() returns)
            # replaces it with the end state, the run dir and the resume command
            self.message = "stopping: running evaluations are cancelled, the journal is kept"
            self.search.stop()

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

"""Showing a search in a notebook: the live widget, a text progress bar, and the static
summary (table + fit plot) that replaces a placeholder output once the search ends."""
from __future__ import annotations

import sys
import threading
import time
from typing import Any, Callable

from IPython.display import HTML, display

from .runs import SearchRecord, resume_command
from .summary import _fmt


def summary_subscriber(rec: SearchRecord) -> Callable[[Any], None]:
    """An event handler that shows the summary when the search finishes."""
    def on_event(event: Any) -> None:
        if event.type != "search_finished" or rec.summary_shown:
            return
        # Rendering loads the best model and plots; keep it off the search's thread.
        threading.Thread(target=show_summary, args=(rec,), daemon=True,
                         name=f"nimm-summary-{rec.search.run_id}").start()

    return on_event


def show_summary(rec: SearchRecord) -> None:
    """Replace the record's placeholder output with the static summary (table + fit plot).

    Called on the main thread after ``--wait``, or on a helper thread when a background
    search ends: it then updates an existing output by display id, never prints.
    """
    if rec.summary_shown:
        return
    rec.summary_shown = True
    from .summary import summary_html

    try:
        result = rec.search.wait(timeout=60)
    except Exception:
        result = rec.search
    try:
        html = summary_html(result if result is not None else rec.search,
                            task=getattr(rec.search, "task", None))
    except Exception as exc:  # a failed plot must not hide the table: say what failed
        html = f"<p>nimm: summary unavailable ({type(exc).__name__}: {exc})</p>"
    if rec.summary_handle is not None:
        rec.summary_handle.update(HTML(html))
    else:
        display(HTML(html))


def print_summary(rec: SearchRecord) -> None:
    """The text summary of a finished search (no widget)."""
    from .summary import summary_text

    try:
        result = rec.search.wait(timeout=60)
    except Exception:
        result = rec.search
    print(summary_text(result if result is not None else rec.search))


def show_widget(rec: SearchRecord, on_export: Callable[[list[int]], str] | None,
                background: bool) -> None:
    """Display the live widget and a placeholder for the summary; a background search
    fills the placeholder when it ends."""
    from .widget import SearchWidget

    search = rec.search
    rec.widget = SearchWidget(search, on_export=on_export)
    rec.widget.show()  # by display id: the static snapshot beside it is replaced at the end
    # An empty output that the final summary replaces: a saved notebook then keeps a
    # static table and plot even without widget state.
    rec.summary_handle = display({"text/plain": ""}, raw=True, display_id=True)
    if background:
        search.subscribe(summary_subscriber(rec))
        if search.done:  # it ended before the subscription
            threading.Thread(target=show_summary, args=(rec,), daemon=True).start()


class HtmlView:
    """The search as static HTML (tree SVG, progress, ranked table), updated in place by
    display id: the live view where widgets cannot render (``--no-widget`` or
    ``NIMM_NO_WIDGET=1`` in a kernel, front ends without a widget manager)."""

    min_interval = 1.0  # seconds between updates; the final one is always sent
    _EVENTS = ("node_created", "node_started", "node_finished", "best_changed", "search_finished")

    def __init__(self, search: Any):
        self.search = search
        self.started = time.time()
        self.updates = 0
        self._last = 0.0
        self._lock = threading.Lock()
        self.handle = display(HTML(self.render()), display_id=True)
        self._unsubscribe = search.subscribe(self.on_event)
        if search.done:  # ended before the subscription
            self.on_event(None)

    def render(self) -> str:
        from .nodeview import mark_cancelled, node_summary, rmse_unit
        from .progress import counters
        from .snapshot import snapshot_html, view_state
        from .summary import end_state

        s = self.search
        rows = {int(n.id): node_summary(n) for n in s.nodes}
        done = bool(s.done)
        if done:
            mark_cancelled(rows)
        best = s.best
        state = view_state(s, rows, int(best.id) if best is not None else None,
                           counters(s, True, rows, self.started),
                           end_state(done, s.status().get("stop_reason")),
                           rmse_unit(getattr(s, "task", None)))
        return snapshot_html(state)

    def on_event(self, event: Any) -> None:
        """Search subscriber: re-render on tree changes, at most every ``min_interval`` s."""
        final = event is None or event.type == "search_finished"
        if not final and event.type not in self._EVENTS:
            return
        with self._lock:
            if not final and time.monotonic() - self._last < self.min_interval:
                return
            self._last = time.monotonic()
            self.updates += 1
            try:
                self.handle.update(HTML(self.render()))
            except Exception:  # a view must never break the search
                pass
        if final and self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None


def watch(search: Any, summary: bool = True) -> Any:
    """Display the live widget for a search started with ``nimm_jupyter.search(...,
    background=True)``, plus the static summary once it ends. Returns the widget."""
    from .widget import SearchWidget

    rec = SearchRecord(search=search, cell_id=None)
    rec.widget = SearchWidget(search)
    rec.widget.show()
    if summary:
        rec.summary_handle = display({"text/plain": ""}, raw=True, display_id=True)
        if getattr(search, "done", True):
            show_summary(rec)
        else:
            search.subscribe(summary_subscriber(rec))
            if search.done:  # ended between the check and the subscription
                show_summary(rec)
    return rec.widget


def wait(search: Any, progress: bool) -> None:
    """Block until ``search`` ends, with a tqdm bar when ``progress``; an interrupt stops
    it (resumable) and says how to continue."""
    bar = None
    if progress:
        from tqdm.auto import tqdm

        total = getattr(getattr(search, "settings", None), "budget", None)
        if total is None and isinstance(getattr(search, "settings", None), dict):
            total = search.settings.get("budget")
        bar = tqdm(total=total, desc=f"nimm {search.run_id}", unit="eval", file=sys.stderr)
    try:
        while not search.done:
            time.sleep(0.1)
            if bar is not None:
                _tick(bar, search)
    except KeyboardInterrupt:
        search.stop()
        deadline = time.time() + 10
        while not search.done and time.time() < deadline:
            try:
                time.sleep(0.05)
            except KeyboardInterrupt:
                break
        if bar is not None:
            bar.close()
            bar = None
        st = search.status()
        print(f"nimm_search: interrupted; search {search.run_id} stopped after "
              f"{st.get('evaluated', 0)} evaluations; continue it with "
              f"`{resume_command(search.run_dir)}`", file=sys.stderr)
    finally:
        if bar is not None:
            _tick(bar, search)
            bar.close()


def show_tasks() -> None:
    """``%nimm tasks``: every registered task as a table (name, kind, source, sizes, one
    line); HTML in a notebook, the same text table as ``nimm tasks`` elsewhere."""
    import html

    from ..tasks.catalog import describe_tasks, task_table

    rows = describe_tasks()
    cells = []
    for r in rows:
        if "error" in r:
            vals = (r["name"], "–", "–", "–", f"unavailable: {r['error']}")
        else:
            s = r["splits"]
            vals = (r["name"], r["kind"], r["source"], f"{s['train']}/{s['val']}/{s['test']}",
                    r.get("description", ""))
        cells.append("<tr>" + "".join(
            f'<td style="text-align:left">{html.escape(str(v))}</td>' for v in vals) + "</tr>")
    head = "".join(f'<th style="text-align:left">{h}</th>' for h in
                   ("name", "kind", "source", "train/val/test", "description"))
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(cells)}</tbody></table>"
    display({"text/plain": task_table(rows), "text/html": table}, raw=True)


def _tick(bar: Any, search: Any) -> None:
    st = search.status()
    done = int(st.get("evaluated", 0))
    if done > bar.n:
        bar.update(done - bar.n)
    bar.set_postfix(best=_fmt(st.get("best_val")), failed=st.get("failed", 0),
                    running=st.get("running", 0), refresh=False)

"""Driving a notebook in JupyterLab or Notebook 7 through the page (DOM clicks and keys) and
reading its model through ``window.jupyterapp`` (both servers run with
``expose_app_in_browser``; both shells list the notebook panel among their 'main' widgets)."""
from __future__ import annotations

import time
from typing import Any

_PANEL_JS = """
(path) => {
  for (const w of window.jupyterapp.shell.widgets('main')) {
    if (w.context && w.context.path === path && w.content && w.content.model) return w;
  }
  return null;
}
"""


def _with_panel(body: str) -> str:
    """A JS function of ``[path, arg]`` with ``panel`` bound to that notebook's panel."""
    return f"""([path, arg]) => {{
      const panel = ({_PANEL_JS})(path);
      if (!panel) throw new Error('notebook ' + path + ' is not open');
      {body}
    }}"""


class Notebook:
    """One open notebook (by path) in ``page``."""

    def __init__(self, page: Any, path: str):
        self.page, self.path = page, path

    def js(self, body: str, arg: Any = None) -> Any:
        return self.page.evaluate(_with_panel(body), [self.path, arg])

    def cells(self) -> list[dict[str, Any]]:
        """id, type, source and metadata.nimm of every cell, in order (from the model)."""
        return self.js("""return panel.content.model.sharedModel.cells.map(c => ({
            id: c.id, cell_type: c.cell_type, source: c.source,
            nimm: c.getMetadata('nimm') ?? null,
            execution_count: c.cell_type === 'code' ? c.execution_count : null}));""")

    def index_of(self, text: str) -> int:
        matches = [i for i, c in enumerate(self.cells()) if text in c["source"]]
        assert len(matches) == 1, f"{len(matches)} cells contain {text!r}"
        return matches[0]

    def active_index(self) -> int:
        return int(self.js("return panel.content.activeCellIndex;"))

    def kernel_status(self) -> str:
        return str(self.js("return panel.sessionContext.session?.kernel?.status ?? 'none';"))

    def wait_kernel_idle(self, timeout: float = 60.0) -> None:
        self.page.wait_for_function(
            _with_panel("return panel.sessionContext.session?.kernel?.status === 'idle';"),
            arg=[self.path, None], timeout=timeout * 1000)

    def run_cell(self, text: str, wait: bool = True, timeout: float = 60.0) -> int:
        """Select the cell containing ``text`` with a click and run it with Shift+Enter."""
        idx = self.index_of(text)
        cell_id = self.cells()[idx]["id"]
        self.page.locator(f"#{self.panel_id()} .jp-Notebook .jp-Cell").nth(idx) \
            .locator(".jp-InputPrompt").click()
        self.page.keyboard.press("Shift+Enter")
        if wait:
            self.wait_executed(cell_id, timeout)
        return idx

    def wait_executed(self, cell_id: str, timeout: float = 60.0) -> None:
        """Until the cell with this id has an execution count and the kernel is idle."""
        self.page.wait_for_function(_with_panel("""
            const cell = panel.content.model.sharedModel.cells.find(c => c.id === arg);
            return cell && cell.execution_count !== null &&
                   panel.sessionContext.session?.kernel?.status === 'idle';"""),
            arg=[self.path, cell_id], timeout=timeout * 1000)

    def output_text(self, text: str) -> str:
        return str(self.js("""
            const i = panel.content.model.sharedModel.cells.findIndex(c => c.source.includes(arg));
            const outs = panel.content.model.cells.get(i).outputs;
            let s = '';
            for (let k = 0; k < outs.length; k++) {
              const o = outs.get(k).toJSON();
              s += o.text ?? JSON.stringify(o.data ?? o.evalue ?? '');
            }
            return s;""", text))

    def save(self, timeout: float = 30.0) -> None:
        """Save the notebook and wait until the saved copy is the current one. An output that
        changes just after a save (a finished search's widget swapping in its end state)
        makes the model dirty again: then it is saved again, until the deadline."""
        deadline = time.time() + timeout
        while True:
            self.js("return panel.context.save().then(() => true);")
            try:
                self.page.wait_for_function(_with_panel("return !panel.context.model.dirty;"),
                                            arg=[self.path, None], timeout=5_000)
                return
            except Exception:
                if time.time() >= deadline:
                    raise

    def panel_id(self) -> str:
        return str(self.js("return panel.id;"))

    def wait_until(self, predicate, timeout: float = 30.0, what: str = "condition") -> Any:
        """Poll ``predicate(self)`` (Python side) until it returns a truthy value."""
        deadline = time.time() + timeout
        while True:
            value = predicate(self)
            if value:
                return value
            if time.time() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
            self.page.wait_for_timeout(200)


# Before the app starts (both front ends set ``window.jupyterapp`` before ``app.start()``),
# the notebook factory's "start a kernel on open" is turned off as it registers: the page then
# opens its notebook as a user who chose "No Kernel" would see it.
_NO_KERNEL_ON_OPEN = """(() => {
  let app;
  Object.defineProperty(window, 'jupyterapp', {configurable: true, get: () => app, set: (value) => {
    app = value;
    const registry = value.docRegistry;
    const add = registry.addWidgetFactory.bind(registry);
    registry.addWidgetFactory = (factory) => {
      if (factory.name === 'Notebook') factory._preferKernel = false;
      return add(factory);
    };
  }});
})();"""


def open_notebook(page: Any, lab: Any, path: str, timeout: float = 90.0,
                  kernel: bool = True) -> Notebook:
    """Open ``path`` in the lab (a workspace of its own) or in Notebook 7, and wait for its
    kernel to be idle; with ``kernel=False`` it opens with no kernel (for this page's every
    later load too), so shut the notebook's session down first."""
    if not kernel:
        page.add_init_script(_NO_KERNEL_ON_OPEN)
    if lab.is_lab:
        workspace = "nimm-" + path.replace(".", "-").replace("/", "-")
        page.goto(lab.url(f"lab/workspaces/{workspace}/tree/{path}"))
    else:
        page.goto(lab.url(f"notebooks/{path}"))
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.started !== undefined",
                           timeout=timeout * 1000)
    app = page.evaluate("() => window.jupyterapp.name")
    assert app == ("JupyterLab" if lab.is_lab else "Jupyter Notebook"), app
    page.wait_for_function(f"() => ({_PANEL_JS})({path!r}) !== null", timeout=timeout * 1000)
    nb = Notebook(page, path)
    if kernel:
        nb.wait_kernel_idle(timeout)
    page.locator(f"#{nb.panel_id()} .jp-Notebook .jp-Cell").first.wait_for()
    return nb

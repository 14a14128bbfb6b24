"""A search's output outlives its kernel, in a real JupyterLab and a real Notebook 7
(Chromium).

A finished search whose kernel restarts says so and disables its buttons at once (no click
needed); the notebook saved and reopened in a fresh kernel (no saved widget state, so no
widget model) shows the static snapshot only, never ipywidgets' "model not found"; and
opened with no kernel at all, the snapshot again.
"""
from __future__ import annotations

import time

import pytest

from .conftest import ARTIFACTS
from .labpage import open_notebook

pytestmark = [pytest.mark.browser, pytest.mark.timeout(360)]

_DECIDED = """() => {
  const views = [...document.querySelectorAll('.jp-nimm-search-view')];
  return views.length > 0 && views.every((v) => v.textContent.includes('model not found'));
}"""


def test_restart_disconnects_and_reopen_shows_the_snapshot(page, front_end):
    t0 = time.time()
    path = "reopen.ipynb"
    nb = open_notebook(page, front_end, path)
    nb.run_cell("%load_ext nimm_jupyter")
    nb.run_cell("%%nimm_search lung_cancer_chemo", timeout=300)  # --wait: ends with the search
    view = page.locator(".jp-nimm-search-view").first
    widget = view.locator(".nimm-widget")
    widget.wait_for(timeout=30_000)
    page.wait_for_function(
        "() => document.querySelector('.nimm-widget')?.dataset.finished === 'true'", timeout=60_000)
    # while the model exists the live widget is shown and its snapshot is not
    assert view.get_attribute("data-nimm-view") == "live"
    assert view.locator(".nimm-snapshot-tree").count() == 1
    assert not view.locator(".nimm-snapshot-tree").is_visible()
    assert not widget.locator(".nimm-export").is_disabled()

    # A restart closes the widget's comm: the view says so and turns its buttons off by itself.
    nb.js("return panel.sessionContext.session.kernel.restart().then(() => true);")
    page.wait_for_function(
        "() => document.querySelector('.nimm-widget')?.dataset.kernel === 'gone'", timeout=20_000)
    assert widget.locator(".nimm-export").is_disabled() and widget.locator(".nimm-stop").is_disabled()
    assert "restarted or shut down" in widget.locator(".nimm-message").inner_text()
    assert "--resume" in widget.locator(".nimm-message").inner_text()
    page.screenshot(path=str(ARTIFACTS / f"reopen-restarted-{front_end.ui_path}.png"))

    # Save, shut the kernel down, reopen in a new page: its fresh kernel has no such model.
    nb.save()
    nb.js("return panel.sessionContext.shutdown().then(() => true);")
    nb = open_notebook(page, front_end, path)
    # ipywidgets has decided (its hidden renderer holds its error): only the snapshot shows
    page.wait_for_function(_DECIDED, timeout=60_000)
    view = page.locator(".jp-nimm-search-view").first
    assert view.get_attribute("data-nimm-view") == "snapshot"
    assert view.locator(".nimm-snapshot-tree").is_visible()
    assert page.locator(".nimm-widget").count() == 0
    shown = page.locator(f"#{nb.panel_id()}").inner_text()
    assert "model not found" not in shown and "Error displaying widget" not in shown
    assert "finished" in view.inner_text()
    page.screenshot(path=str(ARTIFACTS / f"reopen-snapshot-{front_end.ui_path}.png"))

    # Reopened with no kernel at all (as after choosing "No Kernel"): the snapshot again.
    nb.js("return panel.sessionContext.shutdown().then(() => true);")
    nb = open_notebook(page, front_end, path, kernel=False)
    page.wait_for_function(
        "() => document.querySelector('.jp-nimm-search-view')?.dataset.nimmView === 'snapshot'",
        timeout=30_000)
    assert nb.kernel_status() == "none"
    view = page.locator(".jp-nimm-search-view").first
    assert view.locator(".nimm-snapshot-tree").is_visible()
    shown = page.locator(f"#{nb.panel_id()}").inner_text()
    assert "model not found" not in shown and "Loading widget" not in shown
    page.screenshot(path=str(ARTIFACTS / f"reopen-no-kernel-{front_end.ui_path}.png"))
    print(f"test_restart_disconnects_and_reopen_shows_the_snapshot: {time.time() - t0:.1f}s")

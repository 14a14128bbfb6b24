"""The live widget in a real JupyterLab and a real Notebook 7 (Chromium), with a real offline
search.

One flow per front end, to keep CI short: the output goes through the extension's renderer,
live updates change the DOM in place (the code pane keeps its scroll position, the tree's
node elements survive), Stop from the widget ends the run as "stopped" with its cancelled
nodes and the resume command, ``%%nimm_search --resume`` with an empty body and then the
line magic ``%nimm_search --resume`` continue it from cells, a widget whose kernel is gone
says so and disables its buttons, the node panel's what-if draws a forecast computed in the
sandbox, and the saved notebook converted to HTML shows the tree snapshot.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import ARTIFACTS
from .labpage import open_notebook

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

_MARK_TREE = """() => {
  const w = document.querySelector('.nimm-widget');
  const nodes = [...w.querySelectorAll('.nimm-tree .nimm-node')];
  nodes.forEach((g) => { g.__nimmMark = true; });
  return nodes.length;
}"""
_TREE_STATE = """() => {
  const w = document.querySelector('.nimm-widget');
  const nodes = [...w.querySelectorAll('.nimm-tree .nimm-node')];
  const code = w.querySelector('.nimm-code');
  return {n: nodes.length, marked: nodes.filter((g) => g.__nimmMark).length,
          scroll: code.scrollTop, evaluated: w.querySelector('[data-counter=evaluated] b').textContent,
          legend: w.querySelectorAll('.nimm-legend-item').length};
}"""


def test_live_updates_stop_resume_and_snapshot(page, front_end):
    t0 = time.time()
    nb = open_notebook(page, front_end, "live_widget.ipynb")
    nb.run_cell("%load_ext nimm_jupyter")
    search_cell = nb.run_cell("%%nimm_search lung_cancer_chemo", timeout=90)
    widget = page.locator(".nimm-widget").first
    widget.wait_for(timeout=60_000)
    assert widget.get_attribute("data-finished") == "false"  # returned at once, runs on
    # the output goes through the extension's renderer, which shows the live view
    assert page.locator(".jp-nimm-search-view").first.get_attribute("data-nimm-view") == "live"
    done = widget.locator(".nimm-tree .nimm-node.nimm-state-done")
    done.first.wait_for(timeout=150_000)
    assert "0: " in widget.locator(".nimm-lane-label").first.text_content()  # lane titles

    # Select a node and scroll its code; the search keeps running and updating.
    done.first.click()
    code = widget.locator(".nimm-code")
    code.wait_for(timeout=30_000)
    page.evaluate("""() => { const c = document.querySelector('.nimm-widget .nimm-code');
        c.style.maxHeight = '60px'; c.scrollTop = 30;
        const r = document.createRange(); r.selectNodeContents(c);  // the user selects the code
        const sel = window.getSelection(); sel.removeAllRanges(); sel.addRange(r); }""")
    selected_text = page.evaluate("() => window.getSelection().toString()")
    assert "class Model" in selected_text
    assert page.evaluate("() => document.querySelector('.nimm-widget .nimm-code').scrollTop") == 30
    n_marked = page.evaluate(_MARK_TREE)
    before = page.evaluate(_TREE_STATE)

    def changed(_nb):
        now = page.evaluate(_TREE_STATE)
        return now if now["n"] > before["n"] or now["evaluated"] != before["evaluated"] else None

    after = nb.wait_until(changed, timeout=150, what="a live update of the tree or counters")
    assert after["scroll"] == 30, "the code pane's scroll position was reset by an update"
    assert after["marked"] == n_marked, "tree node elements were replaced instead of updated"
    assert after["legend"] >= 6
    assert page.evaluate("() => window.getSelection().toString()") == selected_text, \
        "the selected code text was lost in an update"
    page.screenshot(path=str(ARTIFACTS / f"live-widget-{front_end.ui_path}.png"))

    # Stop from the widget: "stopped", no spinning node left, the resume command shown.
    widget.locator(".nimm-stop").click()
    page.wait_for_function(
        "() => document.querySelector('.nimm-widget')?.dataset.finished === 'true'", timeout=90_000)
    widget = page.locator(".nimm-widget").first
    widget.locator(".nimm-title", has_text="stopped").wait_for(timeout=30_000)
    assert widget.locator(".nimm-tree .nimm-node.nimm-state-running").count() == 0
    assert "%nimm_search --resume" in widget.locator(".nimm-message").inner_text()
    assert widget.locator(".nimm-stop").is_disabled()

    # Continue it from a cell: the cell-magic form with an empty body.
    nb.run_cell('rd, more = str(s.run_dir), s.status()["evaluated"] + 1')
    nb.run_cell("%%nimm_search --resume $rd --budget $more", timeout=90)
    assert "nimm_search: error" not in nb.output_text("%%nimm_search --resume $rd")
    resumed = page.locator(".nimm-widget").nth(1)
    resumed.wait_for(timeout=60_000)
    page.wait_for_function(
        "() => document.querySelectorAll('.nimm-widget')[1]?.dataset.finished === 'true'",
        timeout=150_000)
    assert resumed.locator(".nimm-tree .nimm-node").count() >= after["n"]
    page.screenshot(path=str(ARTIFACTS / f"live-resumed-{front_end.ui_path}.png"))

    # The node panel's what-if: no chemo on one test patient, forecast in the sandbox.
    resumed.locator(".nimm-tree .nimm-node.nimm-state-done").first.click()
    form = resumed.locator(".nimm-whatif")
    form.wait_for(timeout=30_000)
    assert form.locator(".nimm-whatif-input option").all_text_contents() == ["chemo_dose"]
    form.locator(".nimm-whatif-op").select_option("scale")
    form.locator(".nimm-whatif-value").fill("0")
    form.locator(".nimm-whatif-run").click()
    form.locator('polyline[data-series="model what-if"]').wait_for(timeout=120_000)
    assert form.locator('polyline[data-series="model"]').count() == 1
    assert "scale chemo_dose by 0" in form.locator(".nimm-whatif-status").inner_text()

    # ... and again with the line-magic form, the one the stopped widget's message prints
    # (its budget one more than the run has evaluated, so it has one node to evaluate: the
    # oldest a stop cancelled, if any; a resume never evaluates beyond its budget).
    line_form = '%nimm_search --resume $rd --budget {r.status()["evaluated"] + 1}'
    nb.run_cell(line_form, timeout=90)
    assert "nimm_search: error" not in nb.output_text(line_form)
    page.wait_for_function(
        "() => document.querySelectorAll('.nimm-widget')[2]?.dataset.finished === 'true'",
        timeout=150_000)
    evaluated = page.evaluate("""() => [...document.querySelectorAll('.nimm-widget')].map(
        (w) => parseInt(w.querySelector('[data-counter=evaluated] b').textContent, 10))""")
    assert evaluated[2] > evaluated[1] > evaluated[0], evaluated  # each resume went further

    # The dark theme: node fills and the best ring stay distinct from the pane's paper.
    nb.js("return window.jupyterapp.commands.execute('apputils:change-theme', "
          "{theme: 'JupyterLab Dark'}).then(() => true);")
    page.wait_for_function("() => document.body.dataset.jpThemeLight === 'false'", timeout=30_000)
    page.wait_for_timeout(500)
    colours = page.evaluate("""() => {
      const w = document.querySelectorAll('.nimm-widget')[1];
      const best = w.querySelector('.nimm-tree .nimm-node.nimm-best');
      return {dot: getComputedStyle(best.querySelector('.nimm-dot')).fill,
              ring: getComputedStyle(best.querySelector('.nimm-best-ring')).stroke,
              paper: getComputedStyle(document.querySelector('.jp-Notebook')).backgroundColor};
    }""")
    assert len({colours["dot"], colours["ring"], colours["paper"]}) == 3, colours
    page.locator(".nimm-widget").nth(1).screenshot(path=str(ARTIFACTS / f"live-dark-{front_end.ui_path}.png"))
    nb.js("return window.jupyterapp.commands.execute('apputils:change-theme', "
          "{theme: 'JupyterLab Light'}).then(() => true);")

    # Save, then shut the kernel down: the old view says so once it asks, and disables Export.
    nb.save()
    nb.js("return panel.sessionContext.session.shutdown().then(() => true);")
    resumed = page.locator(".nimm-widget").nth(1)
    resumed.locator(".nimm-export").click()
    page.wait_for_function(
        "() => document.querySelectorAll('.nimm-widget')[1]?.dataset.kernel === 'gone'", timeout=20_000)
    assert resumed.locator(".nimm-export").is_disabled()
    assert "does not answer" in resumed.locator(".nimm-message").inner_text()

    # The saved notebook, converted without any widget state, shows the tree snapshot.
    saved = Path(front_end.root) / "live_widget.ipynb"
    html_path = Path(ARTIFACTS) / f"live_widget-{front_end.ui_path}.html"
    ARTIFACTS.mkdir(exist_ok=True)
    subprocess.run([sys.executable, "-m", "nbconvert", "--to", "html", str(saved), "--output",
                    str(html_path.with_suffix(""))], check=True, capture_output=True, timeout=120)
    html = html_path.read_text()
    assert html.count("nimm-snapshot-tree") >= 2  # both search cells
    assert "Error displaying widget" not in html and "(static view)" in html
    print(f"test_live_updates_stop_resume_and_snapshot: {time.time() - t0:.1f}s, cell {search_cell}")

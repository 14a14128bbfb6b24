"""%%nimm_search and %nimm on a plain InteractiveShell, with a fake search engine."""
from __future__ import annotations

import _thread
import threading
import time
from pathlib import Path

import nbformat
import pytest
from IPython.core.interactiveshell import InteractiveShell

from nimm_jupyter.jupyter import magics as magics_mod
from test_widget import FakeSearch

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def shell():
    sh = InteractiveShell.instance()
    sh.extension_manager.load_extension("nimm_jupyter")
    return sh


@pytest.fixture
def nimm(shell, tmp_path, monkeypatch):
    """The registered NimmMagics with a fake engine; records every search call."""
    m = shell.magics_manager.registry["NimmMagics"]
    m.runs.clear()
    m.last_run = None
    m.budget, m.branches, m.proposer, m.run_root = 20, 3, "auto", str(tmp_path / "runs")
    m.channel.available = False
    m.calls = []
    m.fake_options = {}

    def factory(task, **kwargs):
        m.calls.append((task, kwargs))
        s = FakeSearch(Path(kwargs["run_dir"]), **m.fake_options)
        return s.start()

    def resume(run_dir, **overrides):
        m.calls.append(("resume", {"run_dir": run_dir, **overrides}))
        return FakeSearch(Path(run_dir)).start()

    m.search_factory, m.resume_factory = factory, resume
    monkeypatch.delenv(magics_mod.DEMO_BUDGET_ENV, raising=False)
    yield m
    for rec in m.runs.values():
        if not rec.search.done:
            rec.search.stop()


def one_line_error(capsys) -> str:
    out = capsys.readouterr()
    lines = [ln for ln in out.err.splitlines() if ln.strip()]
    assert len(lines) == 1, out.err
    assert "Traceback" not in out.err and out.out.strip() == ""
    return lines[0]


def test_help_lists_options(shell):
    doc = shell.find_cell_magic("nimm_search").__doc__
    for opt in ("--data", "--time", "--targets", "--budget", "--branches", "--proposer", "--out",
                "--wait", "--resume", "--option", "NIMM_DEMO_BUDGET"):
        assert opt in doc, opt
    assert "export" in shell.find_line_magic("nimm").__doc__
    assert "Defaults (a flag not given):" in doc and "--budget 20" in doc.replace("\n", " ")


@pytest.mark.parametrize("line, body, expect", [  # an empty body is IPython's own error
    ("no_such_task", "notes", "unknown task 'no_such_task'"),
    ("lung_cancer --budget 0", "notes", "--budget must be a positive integer"),
    ("lung_cancer --budget -3", "notes", "--budget must be a positive integer"),
    ("lung_cancer --budget many", "notes", "invalid int value"),
    ("lung_cancer --proposer anthropic", "notes", "ANTHROPIC_API_KEY"),
    ("mine --data nothing_here --targets y", "notes", "no variable 'nothing_here'"),
    ("mine --data df --targets y,nope --time t", "notes", "column 'nope' is not in df"),
    ("mine --data df --time t", "notes", "--targets"),
    ("lung_cancer --time t", "notes", "need --data"),
    ("lung_cancer --option nokey", "notes", "KEY=VALUE"),
    ("lung_cancer --out 1x", "notes", "--out needs a Python variable name"),
    ("", "notes", "give a task name"),
])
def test_errors_are_one_line(shell, nimm, capsys, line, body, expect):
    import pandas as pd

    shell.user_ns["df"] = pd.DataFrame({"t": [0.0, 1.0], "y": [1.0, 2.0]})
    assert shell.run_cell_magic("nimm_search", line, body) is None
    assert expect in one_line_error(capsys)
    assert nimm.calls == [] and nimm.runs == {}


def test_engine_error_is_one_line(shell, nimm, capsys):
    from nimm_jupyter.search.api import SearchError

    def failing(task, **kw):
        raise SearchError("policy 'zzz' is unknown; use nimmgen, greedy")

    nimm.search_factory = failing
    shell.run_cell_magic("nimm_search", "lung_cancer --policy zzz", "notes")
    assert "policy 'zzz' is unknown" in one_line_error(capsys)

    def crashing(task, **kw):
        raise ZeroDivisionError("deep inside")

    nimm.search_factory = crashing
    shell.run_line_magic("nimm_search", "lung_cancer")
    line = one_line_error(capsys)
    assert "ZeroDivisionError: deep inside" in line and "%nimm traceback" in line
    shell.run_line_magic("nimm", "traceback")
    assert "ZeroDivisionError" in capsys.readouterr().out


def test_wait_out_binding_and_settings(shell, nimm, capsys, monkeypatch):
    body = "Tumour volume under chemo.\n```python\nclass Model:\n    pass\n```\nmore notes"
    shell.run_line_magic("config", "NimmMagics.branches = 4")
    shell.run_cell_magic("nimm_search", "lung_cancer --budget 7 --out s --wait --option n_patients=30 "
                         '--option "variant=x y"', body)
    s = shell.user_ns["s"]
    assert isinstance(s, FakeSearch) and s.done
    task, kw = nimm.calls[0]
    assert task == "lung_cancer"
    assert kw["budget"] == 7 and kw["branches"] == 4 and kw["background"] is True
    assert kw["task_options"] == {"n_patients": 30, "variant": "x y"}
    assert kw["description"] == body  # the fenced block stays in the description, and is
    assert kw["seed_code"] == "class Model:\n    pass\n"  # also given to a factory taking it
    nimm.search_factory = magics_mod._default_search  # the real API reads it from the description
    assert "seed_code" not in nimm._accepted(dict(kw))
    assert Path(kw["run_dir"]).parent == Path(nimm.run_root)
    out = capsys.readouterr().out
    assert "node" in out and "val" in out  # the text summary table after --wait
    assert magics_mod.parse_cell_body(body)[1] == "class Model:\n    pass\n"


def test_demo_budget_caps(shell, nimm, monkeypatch):
    monkeypatch.setenv(magics_mod.DEMO_BUDGET_ENV, "3")
    shell.run_line_magic("nimm_search", "lung_cancer --budget 50 --wait")
    assert nimm.calls[0][1]["budget"] == 3


def test_background_returns_at_once_and_stop(shell, nimm, capsys):
    nimm.fake_options = {"n_nodes": 500, "step": 0.05}
    t0 = time.time()
    shell.run_cell_magic("nimm_search", "lung_cancer --out s", "tumour growth")
    assert time.time() - t0 < 1.0
    s = shell.user_ns["s"]
    assert not s.done
    assert "running in the background" in capsys.readouterr().out
    # the shell keeps working while the search runs
    res = shell.run_cell("x_val = 21 * 2")
    assert res.success and shell.user_ns["x_val"] == 42 and not s.done
    shell.run_line_magic("nimm", "status")
    assert "running" in capsys.readouterr().out
    t0 = time.time()
    shell.run_line_magic("nimm", "stop")
    assert s.done and time.time() - t0 < 2.0
    out = capsys.readouterr().out
    assert "stopped" in out and "--resume" in out
    shell.run_line_magic("nimm", "list")
    assert s.run_id in capsys.readouterr().out


def test_keyboard_interrupt_during_wait_stops(shell, nimm, capsys):
    nimm.fake_options = {"n_nodes": 500, "step": 0.05}
    threading.Timer(0.4, _thread.interrupt_main).start()
    t0 = time.time()
    shell.run_line_magic("nimm_search", "lung_cancer --out s --wait")
    s = shell.user_ns["s"]
    assert s.done and s.stop_calls >= 1 and time.time() - t0 < 3.0
    err = capsys.readouterr().err
    assert "interrupted" in err and "--resume" in err and "Traceback" not in err


def test_resume(shell, nimm, tmp_path):
    run = tmp_path / "runs" / "old"
    run.mkdir(parents=True)
    shell.run_line_magic("nimm_search", f"--resume {run} --budget 9 --wait")
    name, kw = nimm.calls[0]
    assert name == "resume" and kw["budget"] == 9 and Path(kw["run_dir"]) == run


@pytest.mark.parametrize("cell", ["%%nimm_search --resume {run} --budget 9 --wait",
                                  "%%nimm_search --resume {run} --budget 9 --wait\n\n  \n",
                                  "%nimm_search --resume {run} --budget 9 --wait"])
def test_resume_from_a_cell(shell, nimm, tmp_path, capsys, cell):
    run = tmp_path / "runs" / "old run"  # a space: the printed command must quote it
    run.mkdir(parents=True)
    assert shell.run_cell(cell.format(run=f"'{run}'")).success
    assert "error" not in capsys.readouterr().err
    name, kw = nimm.calls[0]
    assert name == "resume" and kw["budget"] == 9 and Path(kw["run_dir"]) == run


def test_listed_resume_command_works(shell, nimm, tmp_path, capsys):
    run = Path(nimm.run_root) / "lung_cancer-old"
    run.mkdir(parents=True)
    (run / "journal.sqlite").write_text("")
    shell.run_line_magic("nimm", "list")
    out = capsys.readouterr().out
    listed = [ln.split("continue: ", 1)[1] for ln in out.splitlines() if "continue: " in ln]
    assert len(listed) == 1, out
    assert shell.run_cell(listed[0] + " --wait").success
    assert nimm.calls[-1][0] == "resume" and Path(nimm.calls[-1][1]["run_dir"]) == run
    # the other cell form of the same command, and a search of this kernel once it stopped
    assert shell.run_cell("%" + listed[0] + " --wait").success
    assert len(nimm.calls) == 2
    shell.run_line_magic("nimm", "list")
    out = capsys.readouterr().out
    assert "finished (budget)" in out  # the handle's own end state, not a bare "finished"
    # the run is now this kernel's: listed once, with its resume command
    assert out.count(f"continue: %nimm_search --resume {run}") == 1, out


def test_other_cell_magics_are_left_alone(shell):
    from nimm_jupyter.jupyter.magics import empty_body_as_line_magic

    assert empty_body_as_line_magic(["%%nimm_searchx a\n"]) == ["%%nimm_searchx a\n"]
    assert empty_body_as_line_magic(["%%nimm_search a\n", "body\n"]) == ["%%nimm_search a\n", "body\n"]
    assert empty_body_as_line_magic(["%%nimm_search a\n", " \n"]) == ["%nimm_search a\n"]


def test_config_never_shows_key(shell, nimm, capsys, monkeypatch):
    secret = "sk-ant-api03-THIS-IS-A-FAKE-SECRET-123456"
    monkeypatch.setenv("ANTHROPIC_API_KEY", secret)
    shell.run_line_magic("nimm", "config")
    out = capsys.readouterr().out
    assert "ANTHROPIC_API_KEY: set" in out and secret not in out and "FAKE-SECRET" not in out
    assert "budget = 20" in out
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    shell.run_line_magic("nimm", "config")
    assert "ANTHROPIC_API_KEY: not set" in capsys.readouterr().out


def test_unknown_names_suggest_the_nearest(shell, nimm, capsys):
    shell.run_cell_magic("nimm_search", "lung_cancer_chem", "notes")
    assert "did you mean 'lung_cancer_chemo'?" in one_line_error(capsys)
    from nimm_jupyter import tasks

    nimm.search_factory = lambda task, **kw: tasks.get(task, **kw["task_options"])  # as the API
    shell.run_cell_magic("nimm_search", "lung_cancer --option n_patient=5", "notes")
    line = one_line_error(capsys)
    assert "no option 'n_patient' (did you mean 'n_patients'?)" in line
    assert "its options: n_patients, seed, heterogeneity" in line and "_make()" not in line


def test_nimm_tasks_and_bad_subcommand(shell, nimm, capsys):
    shell.run_line_magic("nimm", "tasks")
    out = capsys.readouterr().out
    assert "lung_cancer_chemo" in out
    assert "trajectory" in out and "tabular" in out and "train/val/test" in out
    shell.run_line_magic("nimm", "frobnicate")
    assert "unknown subcommand" in one_line_error(capsys)
    shell.run_line_magic("nimm", "stop")
    assert "no search has been started" in one_line_error(capsys)


def test_save_and_export(shell, nimm, capsys, tmp_path):
    nimm.fake_options = {"settings": {"budget": 5, "task_options": {"n_patients": 5}}}
    shell.run_line_magic("nimm_search", "lung_cancer --out s --wait")
    capsys.readouterr()
    path = tmp_path / "out.ipynb"
    shell.run_line_magic("nimm", f"save {path}")
    assert "wrote" in capsys.readouterr().out
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    roles = [c.metadata["nimm"]["role"] for c in nb.cells]
    assert roles == ["header", "model", "load", "plot"]
    assert {c.metadata["nimm"]["node_id"] for c in nb.cells} == {4}
    # again, with two nodes: node 4's cells are replaced, not duplicated
    shell.run_line_magic("nimm", f"save {path} 4 3")
    capsys.readouterr()
    nb = nbformat.read(path, as_version=4)
    assert [c.metadata["nimm"]["node_id"] for c in nb.cells] == [4] * 4 + [3] * 4
    shell.run_line_magic("nimm", f"save {path} 2")
    assert "node 2 has no trained model" in one_line_error(capsys)
    shell.run_line_magic("nimm", "save nowhere.txt")
    assert "usage" in one_line_error(capsys)

    # without the lab extension: one combined cell via set_next_input
    shell.rl_next_input = None
    shell.run_line_magic("nimm", "export best")
    text = shell.rl_next_input
    assert "class Model" in text and "node 4 validation RMSE" in text
    compile(text, "<export>", "exec")


def test_export_uses_comm_when_extension_present(shell, nimm, capsys):
    nimm.fake_options = {"settings": {"budget": 5, "task_options": {"n_patients": 5}}}
    shell.run_line_magic("nimm_search", "lung_cancer --out s --wait")
    capsys.readouterr()
    rec = nimm.runs[shell.user_ns["s"].run_id]
    rec.cell_id = "cell-abc"

    class Comm:  # a frontend whose extension inserts the cells and answers at once
        sent: list = []

        def send(self, data):
            self.sent.append(data)
            nimm.channel._on_msg({"content": {"data": {
                "type": "ack", "version": 1, "run_id": data["run_id"],
                "request_id": data["request_id"], "inserted": len(data["cells"])}}})

    nimm.channel._comm, nimm.channel.available = Comm(), True
    shell.rl_next_input = None
    try:
        shell.run_line_magic("nimm", "export 4")
    finally:
        nimm.channel._comm, nimm.channel.available = None, False
    msg = Comm.sent[0]
    assert msg["type"] == "insert_cells" and msg["version"] == 1 and msg["replace"] is True
    assert msg["after_cell_id"] == "cell-abc" and msg["run_id"] == rec.search.run_id
    assert [c["metadata"]["nimm"]["role"] for c in msg["cells"]] == ["header", "model", "load", "plot"]
    assert all(isinstance(c["source"], str) for c in msg["cells"])
    assert shell.rl_next_input is None
    assert "inserted 4 cells" in capsys.readouterr().out


def test_current_cell_id_from_parent_header():
    from nimm_jupyter.jupyter.comm import current_cell_id

    class Kernel:
        def get_parent(self, channel="shell"):
            return {"metadata": {"cellId": "c-42"}}

    class Shell:
        kernel = Kernel()

    assert current_cell_id(Shell()) == "c-42"
    assert current_cell_id(object()) is None


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_real_search_in_a_kernel(tmp_path):
    """The real engine in a real kernel: widget + static summary, with --wait and in the
    background (the summary then arrives from the search's thread via its display id)."""
    from nbclient import NotebookClient

    v4 = nbformat.v4
    opts = "--proposer offline --budget 1 --branches 1 --option n_patients=6 --option horizon=12"
    nb = v4.new_notebook(cells=[
        v4.new_code_cell("%load_ext nimm_jupyter"),
        v4.new_code_cell(f"%%nimm_search lung_cancer_chemo {opts} --out s --wait\nTumour growth."),
        v4.new_code_cell(f"%%nimm_search lung_cancer_chemo {opts} --out s2\nTumour growth."),
        v4.new_code_cell("r2 = s2.wait(150)\nimport time\ntime.sleep(2)\n"
                         "w = get_ipython().magics_manager.registry['NimmMagics'].runs[s.run_id].widget\n"
                         "print(len(w.nodes), w.finished, w.best_id, w.counters['evaluated'])"),
        v4.new_code_cell(f"%nimm save {tmp_path / 'saved.ipynb'}"),
    ])
    NotebookClient(nb, timeout=200, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    for i in (1, 2):
        data = [o.get("data", {}) for o in nb.cells[i].outputs]
        assert any("application/vnd.jupyter.widget-view+json" in d for d in data)
        html = "".join(d.get("text/html", "") for d in data)
        assert "nimm-summary" in html and "data:image/png;base64," in html, nb.cells[i].outputs
    text = "".join(o.get("text", "") for o in nb.cells[3].outputs)
    assert text.strip() == "1 True 0 1"
    saved = nbformat.read(tmp_path / "saved.ipynb", as_version=4)
    nbformat.validate(saved)
    assert [c.metadata["nimm"]["role"] for c in saved.cells] == ["header", "model", "load", "plot"]


def test_dataframe_task(shell, nimm):
    import numpy as np
    import pandas as pd

    rows = [{"patient": p, "t": float(k), "V": float(np.exp(0.1 * k + p / 10)), "dose": float(k % 3 == 0)}
            for p in range(12) for k in range(10)]
    shell.user_ns["df"] = pd.DataFrame(rows)
    body = "Tumour volume with a daily dose.\n```python\nclass Model: ...\n```"
    shell.run_cell_magic("nimm_search", "my_tumours --data df --time t --targets V --inputs dose "
                         "--group patient --wait", body)
    task, kw = nimm.calls[0]
    assert task.name == "my_tumours" and task.kind.value == "trajectory"
    assert task.target_names == ["V"] and task.input_names == ["dose"]
    assert "task_options" not in kw and kw["description"] == body


def test_cell_channel_handshake():
    from nimm_jupyter.jupyter.comm import CellChannel, insert_message

    class Comm:
        def __init__(self):
            self.sent = []

        def send(self, data):
            self.sent.append(data)

        def on_msg(self, fn):
            self.msg = fn

        def on_close(self, fn):
            self.close = fn

    ch = CellChannel(object())  # no kernel: never available
    ch.start()
    assert ch.insert_cells("r", [], "c1").sent is False
    comm = Comm()
    ch._attach(comm)
    assert not ch.available  # opened, but no hello yet
    comm.msg({"content": {"data": {"type": "hello", "version": 1}}})
    assert ch.available
    cell = {"cell_type": "code", "source": ["a = 1\n", "b = 2"],
            "metadata": {"nimm": {"run_id": "r", "node_id": 1, "role": "model"}, "other": 1}}
    assert ch.insert_cells("r", [cell], None).sent is False  # no anchor cell id: fall back
    assert ch.insert_cells("r", [cell], "c1").sent is True
    assert comm.sent[0]["cells"][0] == {"cell_type": "code", "source": "a = 1\nb = 2",
                                        "metadata": {"nimm": {"run_id": "r", "node_id": 1,
                                                              "role": "model"}}}
    comm.msg({"content": {"data": {"type": "ack", "version": 1, "run_id": "r", "inserted": 1}}})
    assert ch.replies[-1]["inserted"] == 1
    comm.close({})
    assert not ch.available and ch.insert_cells("r", [cell], "c1").sent is False
    with pytest.raises(ValueError, match="role"):
        insert_message("r", [{"cell_type": "code", "source": "", "metadata": {}}], "c1")


def test_resume_passes_the_executor_and_refuses_fixed_settings(shell, nimm, tmp_path, capsys):
    run = tmp_path / "runs" / "old"
    run.mkdir(parents=True)
    shell.run_line_magic("nimm_search", f"--resume {run} --executor ray --gpus-per-eval 1 --wait")
    name, kw = nimm.calls[0]
    assert name == "resume" and kw["executor"] == "ray"
    assert kw["executor_options"] == {"num_gpus": 1.0}
    capsys.readouterr()
    shell.run_line_magic("nimm_search", f"--resume {run} --policy greedy --branches 2")
    err = one_line_error(capsys)
    assert "--branches, --policy cannot be changed when resuming" in err and len(nimm.calls) == 1


@pytest.mark.parametrize("flags, named", [
    ("--targets y --time t", "--time, --targets"),
    ("--data df --targets y", "--data, --targets"),
    ("--test-last 3 --features a,b", "--features, --test-last"),
])
def test_resume_refuses_data_flags_by_name(shell, nimm, tmp_path, capsys, flags, named):
    run = tmp_path / "runs" / "old"
    run.mkdir(parents=True)
    shell.run_line_magic("nimm_search", f"--resume {run} {flags} --budget 9")
    err = one_line_error(capsys)
    assert f"{named} cannot be given with --resume" in err
    assert "uses its run's own task and data" in err
    assert nimm.calls == []  # nothing resumed with the flags silently dropped


def test_resume_refuses_a_task_name_and_fixed_settings_in_one_line(shell, nimm, tmp_path, capsys):
    run = tmp_path / "runs" / "old"
    run.mkdir(parents=True)
    shell.run_cell(f"%%nimm_search lung_cancer --resume {run} --group g --policy greedy\n")
    err = one_line_error(capsys)
    assert "the task name 'lung_cancer', --group cannot be given with --resume" in err
    assert "--policy cannot be changed when resuming" in err
    assert nimm.calls == []


def test_resume_refuses_a_cell_body(shell, nimm, tmp_path, capsys):
    run = tmp_path / "runs" / "old"
    run.mkdir(parents=True)
    shell.run_cell(f"%%nimm_search --resume {run} --budget 9\nA new description of the system.\n")
    err = one_line_error(capsys)
    assert "--resume takes no cell body" in err and "own description and seed code" in err
    assert nimm.calls == []

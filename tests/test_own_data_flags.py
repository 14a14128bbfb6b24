"""The user's own data through `nimm search/eval --csv` and `%%nimm_search --data`: forecast
flags from the one option table, checks before any training, log-friendly progress."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nimm_jupyter.cli import main
from nimm_jupyter.search.rundir import JOURNAL_NAME

pytestmark = pytest.mark.timeout(180)

PRIOR = '''\
import torch
from torch import nn
from nimm_jupyter.blocks import Real


class Model(nn.Module):
    """Exponential relaxation to a level: dy/dt = r (m - y), Euler steps."""

    def __init__(self, spec):
        super().__init__()
        self.r = Real(0.1)
        self.m = Real(float(spec.target_mean[0]))

    def forward(self, y_context, u, t):
        y = y_context[:, -1]
        out = []
        for k in range(y_context.shape[1] - 1, t.shape[0] - 1):
            y = y + (t[k + 1] - t[k]) * self.r() * (self.m() - y)
            out.append(y)
        return torch.stack(out, dim=1)
'''


@pytest.fixture
def csv(tmp_path) -> Path:
    years = np.arange(1900, 1921)
    path = tmp_path / "pelts.csv"
    pd.DataFrame({"year": years, "hare": 30 + 10 * np.sin(years / 2.0),
                  "lynx": 20 + 5 * np.cos(years / 2.0)}).to_csv(path, index=False)
    return path


def call(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def one_error(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("extra, needle", [
    (["--targets", "hare,hare"], "targets names 'hare' twice; list each column once "
                                 "(--targets hare)"),
    (["--targets", "hare", "--group", "year"], "every value of --group year occurs in one row"),
    (["--targets", "hare", "--test-last", "9"], "leave 3 for training, fewer than --context 1 "
                                                "+ --horizon 9; lower these"),
    (["--targets", "hare", "--option", "window=2"], "--option/--n-patients apply to built-in "
                                                    "tasks; for --csv use the data options"),
    (["--targets", "hare", "--context", "0"], "--context must be a positive integer"),
])
def test_malformed_csv_searches_are_one_line_before_any_run(capsys, csv, tmp_path, extra,
                                                             needle):
    run_dir = tmp_path / "run"
    code, out, err = call(capsys, "search", "--csv", str(csv), "--time", "year", *extra,
                          "--run-dir", str(run_dir))
    assert code == 2 and out == "" and needle in one_error(err)
    assert not (run_dir / JOURNAL_NAME).exists()


def test_broken_seed_code_is_shown_with_its_line_before_anything_runs(capsys, csv, tmp_path):
    seed = tmp_path / "seed.py"
    seed.write_text(PRIOR.replace("def forward(self, y_context, u, t):",
                                  "def forward(self, y_context, u, t)"))
    run_dir = tmp_path / "run"
    code, out, err = call(capsys, "search", "--csv", str(csv), "--time", "year", "--targets",
                          "hare", "--seed-code", str(seed), "--run-dir", str(run_dir))
    line = one_error(err.split("\n", 1)[1])  # the first line is the data layout
    assert code == 2 and "seed code fails the contract check (syntax_error)" in line
    assert "at line 14" in line and not (run_dir / JOURNAL_NAME).exists()
    seed.write_text("x = 1\n")
    code, out, err = call(capsys, "search", "lung_cancer", "--seed-code", str(seed))
    assert code == 2 and "defines no `class Model`" in one_error(err)


def test_existing_run_dir_gets_a_cli_resume_hint(capsys, csv, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / JOURNAL_NAME).write_text("")
    code, out, err = call(capsys, "search", "--csv", str(csv), "--time", "year", "--targets",
                          "hare", "--run-dir", str(tmp_path / "run"))
    assert code == 2 and f"continue it with: nimm resume {tmp_path / 'run'}" in err
    assert "resume(" not in err


def test_data_flags_without_csv_are_refused(capsys):
    code, out, err = call(capsys, "search", "lung_cancer", "--test-last", "3")
    assert code == 2 and "--test-last describe the columns of --csv FILE" in one_error(err)


def test_no_silent_flag_abbreviations(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "lung_cancer", "--reference", "prior", "--timeo", "5"])
    assert "unrecognized arguments: --timeo" in capsys.readouterr().err


def test_eval_csv_scores_one_model_with_the_search_split(capsys, csv, tmp_path):
    code_file = tmp_path / "prior.py"
    code_file.write_text(PRIOR)
    code, out, err = call(capsys, "eval", "--csv", str(csv), "--time", "year", "--targets",
                          "hare", "--test-last", "3", "--horizon", "3", "--context", "2",
                          "--code", str(code_file), "--max-epochs", "20", "--device", "cpu",
                          "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["status"] == "ok" and d["test"]["rmse"] == d["test"]["rmse"]
    assert "pelts: test: last 3 of 21 year values (1918..1920), forecast 3 steps from year " \
           "1917 given 2 steps of context" in err


def test_csv_search_with_seed_code_logs_one_line_per_node(capsys, csv, tmp_path):
    seed = tmp_path / "seed.py"
    seed.write_text(PRIOR)
    code, out, err = call(capsys, "search", "--csv", str(csv), "--time", "year", "--targets",
                          "hare", "--test-last", "4", "--seed-code", str(seed), "--budget", "2",
                          "--proposer", "offline", "--max-epochs", "5", "--device", "cpu",
                          "--run-dir", str(tmp_path / "run"))
    assert code == 0, err
    assert "\r" not in err  # stderr is not a terminal: no progress-bar redraws
    lines = [ln for ln in err.splitlines() if ln.startswith("node ")]
    assert len(lines) == 2 and lines[-1].split()[1] in {"0", "1"} and "[2/2]" in lines[-1]
    assert "test: last 4 of 21 year values" in err


def test_magic_data_takes_the_same_forecast_flags(capsys):
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.extension_manager.load_extension("nimm_jupyter")
    m = shell.magics_manager.registry["NimmMagics"]
    calls = []

    def factory(task, **kwargs):
        calls.append(task)
        raise ValueError("stop here")  # the task is all this test needs

    saved, m.search_factory = m.search_factory, factory
    try:
        years = np.arange(1900, 1921)
        shell.user_ns["pelts"] = pd.DataFrame({"year": years, "hare": np.sin(years / 2.0)})
        shell.run_cell_magic("nimm_search", "--data pelts --time year --targets hare "
                             "--test-last 3 --val-last 2 --context 2 --horizon 1", "hares")
        out = capsys.readouterr().out
        assert "pelts: test: last 3 of 21 year values" in out
        task = calls[0]
        assert task.sizes() == {"train": 14, "val": 2, "test": 3} and task.context == 2
        shell.run_cell_magic("nimm_search", "--data pelts --time year --targets hare,hare", "hares")
        err = capsys.readouterr().err
        assert "targets names 'hare' twice" in err and err.strip().count("\n") == 0
    finally:
        m.search_factory = saved


def test_magic_shows_broken_seed_code_with_its_line_and_starts_nothing(capsys, tmp_path):
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.extension_manager.load_extension("nimm_jupyter")
    from nimm_jupyter.jupyter import magics as magics_mod

    m = shell.magics_manager.registry["NimmMagics"]
    saved, m.search_factory = m.search_factory, magics_mod._default_search  # the real engine
    years = np.arange(1900, 1921)
    shell.user_ns["pelts"] = pd.DataFrame({"year": years, "hare": np.sin(years / 2.0)})
    broken = PRIOR.replace("self.r = Real(0.1)", "self.r = Real(0.1")
    run_dir = tmp_path / "run"
    try:
        shell.run_cell_magic("nimm_search", f"--data pelts --time year --targets hare "
                             f"--run-dir {run_dir} --proposer offline --wait",
                             f"Hares.\n```python\n{broken}```\n")
    finally:
        m.search_factory = saved
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "seed code fails the contract check (syntax_error)" in lines[0]
    assert "line 11" in lines[0] and not (run_dir / JOURNAL_NAME).exists()


def test_a_search_without_any_working_model_exits_1(capsys, csv, tmp_path):
    seed = tmp_path / "seed.py"  # passes the contract check (3 samples), fails in training
    seed.write_text(PRIOR.replace("        y = y_context[:, -1]\n",
                                  "        if y_context.shape[0] > 3:\n"
                                  "            raise RuntimeError('batch too large')\n"
                                  "        y = y_context[:, -1]\n"))
    code, out, err = call(capsys, "search", "--csv", str(csv), "--time", "year", "--targets",
                          "hare", "--test-last", "2", "--context", "2", "--horizon", "1",
                          "--seed-code", str(seed), "--budget", "1", "--proposer", "offline",
                          "--max-epochs", "5", "--device", "cpu", "--run-dir",
                          str(tmp_path / "run"))
    assert code == 1 and "no model evaluated successfully" in out, (out, err)


def test_csv_dates_are_read_as_dates(capsys, tmp_path):
    path = tmp_path / "cases.csv"
    pd.DataFrame({"day": pd.date_range("2021-01-01", periods=30, freq="D").strftime("%Y-%m-%d"),
                  "cases": np.arange(30.0)}).to_csv(path, index=False)
    code, out, err = call(capsys, "search", "--csv", str(path), "--time", "day", "--targets",
                          "cases", "--test-last", "5", "--budget", "0")
    assert "test: last 5 of 30 day values (2021-01-26..2021-01-30)" in err
    assert code == 2 and "--budget must be a positive integer" in err

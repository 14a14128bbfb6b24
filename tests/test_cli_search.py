"""`nimm search/resume/show` end to end: real executor, offline and replay proposers."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from nimm_jupyter.proposers.replay import ReplayError, load_records
from nimm_jupyter.search.api import open_run
from nimm_jupyter.search.recording import record_replay

from fakes import kill_9_after, wait_for_done

pytestmark = pytest.mark.timeout(180)
BASE = ["lung_cancer_chemo", "--n-patients", "32", "--max-epochs", "5"]
# Not `python -m nimm_jupyter.cli`: that runs cli.py as __main__, a second copy of the module
# whose CLIError is not the one the commands raise.
NIMM = [sys.executable, "-c", "import sys; from nimm_jupyter.cli import main; sys.exit(main())"]


def nimm(*args: str, check: bool = True, timeout: float = 150) -> subprocess.CompletedProcess:
    proc = subprocess.run([*NIMM, *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "COLUMNS": "120"})
    if check and proc.returncode != 0:
        raise AssertionError(f"nimm {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return proc


def one_json(stdout: str) -> dict:
    """stdout must hold exactly one JSON object and nothing else."""
    obj, end = json.JSONDecoder().raw_decode(stdout.strip())
    assert stdout.strip()[end:].strip() == "", f"extra output after the JSON: {stdout[end:]!r}"
    assert isinstance(obj, dict)
    return obj


@pytest.fixture(scope="module")
def first_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    proc = nimm("search", *BASE, "--budget", "3", "--proposer", "offline", "--run-dir",
                str(run_dir), "--json")
    out = one_json(proc.stdout)
    assert out["run_dir"] == str(run_dir) and out["run_id"] == "run"
    assert sum(out["counts"].values()) == 3 and out["stop_reason"] == "budget"
    assert out["best"]["val_rmse"] > 0 and out["best"]["test_rmse"] > 0
    assert set(out) >= {"run_id", "run_dir", "best", "counts", "tokens", "cost", "wall_time"}
    return run_dir


def test_show_prints_tree_and_best(first_run):
    out = one_json(nimm("show", str(first_run), "--json").stdout)
    assert len(out["nodes"]) == 3 and out["best"]["id"] in {n["id"] for n in out["nodes"]}
    assert all(set(n) >= {"id", "branch", "operator", "status", "val_rmse", "test_rmse"}
               for n in out["nodes"])
    text = nimm("show", str(first_run)).stdout
    assert "best: node" in text and "branches:" in text and "fitted parameters" in text


def test_resume_extends_the_run(first_run, tmp_path):
    before = open_run(first_run)
    out = one_json(nimm("resume", str(first_run), "--budget", "4", "--json").stdout)
    assert sum(out["counts"].values()) == 4
    after = open_run(first_run)
    for n in before.nodes:  # earlier nodes untouched
        assert after.node(n.id).finished == n.finished and after.node(n.id).code == n.code


def test_replay_reproduces_a_recorded_run(first_run, tmp_path):
    replay = tmp_path / "replay.jsonl"
    n = record_replay(first_run, replay)
    assert n == len(open_run(first_run).nodes)
    records = load_records(replay)
    assert records[0]["operator"] == "strategies"
    run2 = tmp_path / "replayed"
    out = one_json(nimm("search", *BASE, "--budget", "3", "--proposer", "replay", "--replay",
                        str(replay), "--run-dir", str(run2), "--json").stdout)
    assert sum(out["counts"].values()) == 3
    original = [n.code for n in open_run(first_run).nodes[:3]]
    assert [n.code for n in open_run(run2).nodes] == original


def test_replay_file_errors(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"operator": "mutate", "code": "x"}\n')
    with pytest.raises(ReplayError, match="operator"):
        load_records(bad)
    with pytest.raises(ReplayError, match="does not exist"):
        load_records(tmp_path / "missing.json")


def test_bad_input_is_one_clear_error(tmp_path, capsys):
    from nimm_jupyter.cli import main  # in-process: the exit status and stderr are the same

    def call(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    code, out, err = call("search", "no_such_task", "--run-dir", str(tmp_path / "x"))
    assert code == 2 and "unknown task 'no_such_task'" in err and out == ""
    code, out, err = call("search", *BASE, "--proposer", "replay")
    assert code == 2 and "--replay FILE" in err
    code, out, err = call("search", *BASE, "--option", "oops")
    assert code == 2 and "KEY=VALUE" in err
    code, out, err = call("search", *BASE, "--policy-option", "distil_at=0",
                          "--run-dir", str(tmp_path / "p"))
    assert code == 2 and err.count("\n") == 1 and "['distil_at']" in err and "distill_at" in err
    code, out, err = call("show", str(tmp_path / "nothing"))
    assert code == 2 and "no search journal" in err
    code, out, err = call("search", "--csv", str(tmp_path / "missing.csv"), "--targets", "y")
    assert code == 2 and "does not exist" in err


def start(run_dir: Path, budget: int) -> subprocess.Popen:
    return subprocess.Popen(
        [*NIMM, "search", *BASE, "--budget", str(budget),
         "--proposer", "offline", "--run-dir", str(run_dir), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)




def test_kill_9_then_nimm_resume(tmp_path):
    run_dir = tmp_path / "run"
    proc = start(run_dir, budget=5)
    kill_9_after(run_dir, 2, proc)
    before = open_run(run_dir)
    done = {n.id: n for n in before.nodes if n.completed}
    assert len(done) >= 2
    out = one_json(nimm("resume", str(run_dir), "--json").stdout)
    assert sum(out["counts"].values()) == 5 and out["stop_reason"] == "budget"
    after = open_run(run_dir)
    assert len(after.nodes) == 5 and all(n.completed for n in after.nodes)
    for i, n in done.items():  # not lost, not re-evaluated
        assert after.node(i).finished == n.finished
        assert after.node(i).result.to_dict()["val"] == n.result.to_dict()["val"]


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tmp_path):
    run_dir = tmp_path / "run"
    proc = start(run_dir, budget=40)
    try:
        wait_for_done(run_dir, 1, proc)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert f"nimm resume {run_dir}" in stderr
    out = one_json(stdout)
    assert out["status"] == "stopped"
    assert open_run(run_dir).status == "stopped"


def test_csv_task_search_in_process(tmp_path, capsys):
    import numpy as np
    import pandas as pd

    from nimm_jupyter.cli import main

    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, size=(40, 2))
    pd.DataFrame({"x1": x[:, 0], "x2": x[:, 1], "y": 1.5 * x[:, 0] ** 2 - 0.7 * x[:, 1]}).to_csv(
        tmp_path / "data.csv", index=False)
    code = main(["search", "--csv", str(tmp_path / "data.csv"), "--targets", "y", "--inputs",
                 "x1,x2", "--budget", "2", "--proposer", "offline", "--max-epochs", "5",
                 "--device", "cpu", "--run-dir", str(tmp_path / "run"), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    result = one_json(out)
    assert result["task"] == "data" and sum(result["counts"].values()) == 2
    assert (tmp_path / "run" / "task.pkl").exists()  # a user task travels with its run


def test_ray_options_without_ray_executor_are_one_line_errors(capsys):
    from nimm_jupyter.cli import main

    code = main(["search", "lung_cancer_chemo", "--n-patients", "8", "--budget", "1",
                 "--ray-address", "127.0.0.1:6379"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "--executor ray" in err


def test_resume_with_a_missing_replay_file_is_one_line(first_run, tmp_path, capsys):
    from nimm_jupyter.cli import main

    code = main(["resume", str(first_run), "--replay", str(tmp_path / "missing.jsonl")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "does not exist" in err

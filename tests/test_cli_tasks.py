"""``nimm tasks``: the table, the ``--json`` list, and tasks that fail to build."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import pytest

from nimm_jupyter import cli, tasks

SYNTHETIC = ["covid_bogota_synthetic", "covid_medellin_synthetic", "mrsa_virginia_synthetic"]


@pytest.mark.timeout(300)
def test_json_lists_every_registered_task_as_a_subprocess():
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, "-m", "nimm_jupyter.cli", "tasks", "--json"],
                          capture_output=True, text=True, env=env, timeout=280)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(proc.stdout)  # exactly one JSON document on stdout
    assert isinstance(rows, list)
    assert [r["name"] for r in rows] == tasks.list_tasks()
    by_name = {r["name"]: r for r in rows}
    for r in rows:  # other task modules may still be missing: then an error is listed
        assert ("error" in r) != ("kind" in r), r
        if "error" in r:
            assert isinstance(r["error"], str) and r["error"]
        else:
            assert r["kind"] in ("trajectory", "tabular")
            assert r["source"] in ("real", "simulated", "synthetic")
            assert set(r["splits"]) == {"train", "val", "test"}
            assert all(isinstance(v, int) and v > 0 for v in r["splits"].values())
            assert isinstance(r["description"], str) and "\n" not in r["description"]
    for name in SYNTHETIC:
        r = by_name[name]
        assert "error" not in r, r
        assert r["source"] == "synthetic" and r["description"].startswith("SYNTHETIC")
        assert r["kind"] == "trajectory" and r["splits"]["train"] > r["splits"]["test"]


def _broken(**_):
    raise FileNotFoundError("data file influenza.csv is missing\nsecond line")


def _noisy(**_):
    print("factory chatter")
    warnings.warn("placeholder populations")
    return tasks.get("covid_medellin_synthetic", weeks=40)


@pytest.fixture
def fake_registry(monkeypatch):
    monkeypatch.setitem(tasks._USER, "broken_task", _broken)
    monkeypatch.setitem(tasks._USER, "noisy_task", _noisy)
    monkeypatch.setattr(tasks, "list_tasks", lambda: ["noisy_task", "broken_task"])


def test_json_is_clean_and_failures_become_error_fields(fake_registry, capsys):
    assert cli.main(["tasks", "--json"]) == 0
    out, err = capsys.readouterr()
    rows = json.loads(out)
    assert [r["name"] for r in rows] == ["noisy_task", "broken_task"]
    assert rows[0]["source"] == "synthetic" and rows[0]["splits"]["train"] > 0
    assert rows[1]["error"] == "FileNotFoundError: data file influenza.csv is missing"
    assert "kind" not in rows[1]
    assert "factory chatter" in err and "placeholder populations" in err
    assert "factory chatter" not in out


def test_table_is_readable(fake_registry, capsys):
    assert cli.main(["tasks"]) == 0
    out, _ = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["name", "kind", "source", "train/val/test"]
    noisy = next(line for line in lines if line.startswith("noisy_task"))
    assert "trajectory" in noisy and "synthetic" in noisy and "SYNTHETIC" in noisy
    broken = next(line for line in lines if line.startswith("broken_task"))
    assert "ERROR FileNotFoundError" in broken


def test_one_task_in_full_as_json(capsys):
    argv = ["tasks", "lung_cancer_chemo", "--option", "n_patients=20", "--option",
            "policy=window15", "--json"]
    assert cli.main(argv) == 0
    out, _ = capsys.readouterr()
    info = json.loads(out)  # one JSON object on stdout
    task = tasks.get("lung_cancer_chemo", n_patients=20, policy="window15")
    assert info["name"] == "lung_cancer_chemo" and info["kind"] == "trajectory"
    assert info["source"] == "simulated" and info["splits"] == {"train": 20, "val": 20, "test": 20}
    assert info["description"] == task.description and "\n" in info["description"]
    assert info["prior_code"] == task.prior_code and info["prior_omits"] == task.prior_omits
    assert info["provenance"] == task.provenance and "window15" in info["provenance"]
    assert info["options"]["policy"] == "window15" and info["options"]["n_patients"] == 20
    assert info["inputs"] == [{"name": "chemo_dose", "unit": "units/day",
                               "description": "chemotherapy dose given that day"}]
    assert [(v["name"], v["unit"]) for v in info["targets"]] == [
        ("V", "cm^3"), ("C", "concentration units")]
    assert info["context"] == 1 and info["time_points"] == 60
    # the prompt is the proposer's task block: description, prior, what it misses, interface
    prompt = info["prompt"]
    assert prompt.startswith("# Task: lung_cancer_chemo (trajectory)")
    for part in (task.description, task.prior_code.strip(), task.prior_omits,
                 "## Candidate interface", "chemo_dose [units/day]", "train=20, val=20"):
        assert part in prompt, part[:60]
    assert "test=" not in prompt


def test_one_task_as_text_and_its_default_policy(capsys):
    assert cli.main(["tasks", "lung_cancer_chemo_radio", "--option", "n_patients=5"]) == 0
    out, _ = capsys.readouterr()
    assert out.startswith("lung_cancer_chemo_radio (trajectory, simulated); train/val/test 5/5/5")
    assert "radio_dose [Gy]" in out and '"policy": "hdtwingen"' in out
    assert "What the prior leaves out:" in out and "class Model" in out
    assert "Provenance: " in out and "current diameter" in out


@pytest.mark.parametrize("argv, message", [
    (["tasks", "lung_cancer", "--option", "policy=window30", "--json"],
     "policy must be one of hdtwingen, window15, got 'window30'"),
    (["tasks", "no_such_task", "--json"], "unknown task 'no_such_task'"),
    (["tasks", "--option", "policy=window15"], "--option needs a task NAME"),
])
def test_one_task_errors_are_one_line_and_exit_2(capsys, argv, message):
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and message in err and len(err.strip().splitlines()) == 1

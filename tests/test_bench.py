"""``nimm bench``: the grid, its resumability, the results files, the plots and the CLI."""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import threading

import pytest

from nimm_jupyter import tasks
from nimm_jupyter.bench import (
    BenchConfig, BenchError, aggregate, best_so_far, paper_row, plan_grid, run_benchmark,
    run_dir_for, run_state,
)
from nimm_jupyter.cli import main
from nimm_jupyter.modeling.config import TrainConfig
from nimm_jupyter.modeling.result import EvalResult, SplitScores, Status
from nimm_jupyter.search.api import open_run, search
from nimm_jupyter.search.node import Node
from toy_tasks import make_toy_trajectory

pytestmark = pytest.mark.timeout(120)
TOY = "bench_toy"


def _toy(**options):
    # The registry name must be the task's own name: a resumed search rebuilds it by name.
    task = make_toy_trajectory(n_train=8, n_val=4, n_test=4, T=10, **options)
    return dataclasses.replace(task, name=TOY)


@pytest.fixture
def toy_task():
    tasks.register(TOY, _toy)
    yield TOY
    tasks.unregister(TOY)


def _argv(out, *extra, seeds=2, budget=2):
    return ["bench", "--tasks", TOY, "--policies", "nimmgen,greedy", "--seeds", str(seeds),
            "--budget", str(budget), "--max-epochs", "5", "--device", "cpu", "--out", str(out),
            *extra]


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _journal_state(out):
    """(modification time, node count) of every run journal under ``out``."""
    state = {}
    for policy in ("nimmgen", "greedy"):
        for seed in (0, 1):
            rd = run_dir_for(out, TOY, policy, seed)
            state[(policy, seed)] = ((rd / "journal.sqlite").stat().st_mtime_ns,
                                     len(open_run(rd).nodes))
    return state


def test_grid_files_then_second_invocation_reruns_nothing(tmp_path, toy_task, capsys):
    out = tmp_path / "bench"
    assert main(_argv(out, "--json")) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)  # exactly one JSON document, nothing else on stdout
    assert captured.out.strip().count("\n") == 0
    assert len(report["runs"]["ran"]) == 4 and report["runs"]["skipped"] == []
    assert report["references_trained"] == 6

    rows = _rows(out / "results.csv")
    assert [(r["policy"], r["seed"]) for r in rows] == [
        ("nimmgen", "0"), ("nimmgen", "1"), ("greedy", "0"), ("greedy", "1")]
    for r in rows:
        assert r["task"] == TOY and r["status"] == "completed" and r["stop_reason"] == "budget"
        assert int(r["n_nodes"]) == 2 and int(r["n_ok"]) + int(r["n_failed"]) == 2
        assert math.isfinite(float(r["best_test_rmse"])) and float(r["best_test_rmse"]) > 0
        assert float(r["best_test_rmse_norm"]) > 0 and r["best_node"] != ""
        # the row's best is the run's best node by validation, with its test RMSE
        best = open_run(r["run_dir"]).best
        assert int(r["best_node"]) == best.id
        assert float(r["best_test_rmse"]) == pytest.approx(best.rmse("test"))
        # a trajectory task: the teacher-forced one-step columns beside the rollout's
        assert float(r["best_test_rmse_one_step"]) == pytest.approx(best.result.test.rmse_one_step)
        assert float(r["best_val_rmse_one_step"]) > 0
    refs = _rows(out / "references.csv")
    assert sorted((r["reference"], r["seed"]) for r in refs) == sorted(
        (w, s) for w in ("prior", "neural", "hybrid") for s in ("0", "1"))
    assert all(r["status"] == "ok" for r in refs)
    assert all(float(r["test_rmse_one_step"]) > 0 for r in refs)  # beside the rollout's

    md = (out / "results.md").read_text()
    assert ("| model | test RMSE mean ± s.e. (n) | one-step test RMSE mean ± s.e. (n) "
            "| worst test RMSE | valid-node rate") in md
    assert "NIMM paper NIMMGen test RMSE" in md and "## Stability" in md
    stability = next(line for line in md.splitlines() if line.startswith(f"| {TOY} | nimmgen |"))
    assert stability.count("|") == 8  # task, policy, runs, mean, s.e., std, worst
    nimmgen_row = next(line for line in md.splitlines() if line.startswith("| nimmgen |"))
    assert "±" in nimmgen_row.split("|")[3]  # the one-step column holds a figure
    for label in ("prior (reference)", "neural (reference)", "hybrid (reference)",
                  "| nimmgen |", "| greedy |", "NIMMGen std ≤ ½ greedy std"):
        assert label in md
    for name in (f"best_so_far_{TOY}.png", f"spread_{TOY}.png"):
        png = out / name
        assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = report["summary"][TOY]
    assert summary["policies"]["nimmgen"]["runs"] == 2
    assert set(summary["checks"]) >= {"nimmgen_beats_prior", "nimmgen_std_le_half_greedy"}

    before = _journal_state(out)
    ref_mtime = (out / "references.csv").stat().st_mtime_ns
    assert main(_argv(out, "--json")) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["runs"]["ran"] == [] and again["runs"]["resumed"] == []
    assert len(again["runs"]["skipped"]) == 4 and again["references_trained"] == 0
    assert _journal_state(out) == before  # no journal was even written to
    assert (out / "references.csv").stat().st_mtime_ns == ref_mtime

    # a raised budget resumes every run to the new budget, keeping the earlier nodes
    first_nodes = {k: [n.created for n in open_run(run_dir_for(out, TOY, *k)).nodes]
                   for k in before}
    assert main(_argv(out, "--json", budget=3)) == 0
    third = json.loads(capsys.readouterr().out)
    assert len(third["runs"]["resumed"]) == 4
    for k, created in first_nodes.items():
        nodes = open_run(run_dir_for(out, TOY, *k)).nodes
        assert len(nodes) == 3 and [n.created for n in nodes[:2]] == created


def test_interrupted_run_is_resumed_and_finished_ones_kept(tmp_path, toy_task):
    out = tmp_path / "bench"
    rd = run_dir_for(out, TOY, "greedy", 1)
    # Start the grid's greedy/seed1 search by hand and stop it after its first evaluation,
    # as Ctrl-C or a crash would.
    seen = threading.Event()

    def on_event(ev):
        if ev.type == "node_finished":
            seen.set()

    s = search(TOY, budget=3, policy="greedy", proposer="offline", seed=1, device="cpu",
               run_dir=rd, background=True, train=TrainConfig(seed=1, max_epochs=5),
               on_event=on_event)
    assert seen.wait(60)
    s.stop(timeout=30)
    stopped = open_run(rd)
    assert stopped.status == "stopped" and run_state(rd, 3) == "resume"
    done_before = [n.id for n in stopped.nodes if n.completed]
    assert done_before

    config = BenchConfig(tasks=[TOY], out=out, policies=["greedy"], seeds=2, budget=3,
                         max_epochs=5, device="cpu")
    todo, done = plan_grid(config)
    assert [(c.seed, c.mode) for c in todo] == [(0, "new"), (1, "resume")] and done == []
    log: list[str] = []
    report = run_benchmark(config, log=log.append)
    assert report.ran == [f"{TOY}/greedy/seed0"] and report.resumed == [f"{TOY}/greedy/seed1"]
    resumed = open_run(rd)
    assert resumed.status == "completed" and resumed.stop_reason == "budget"
    assert len(resumed.nodes) == 3
    for nid in done_before:  # kept, not evaluated again
        assert resumed.node(nid).finished == stopped.node(nid).finished
    assert any("(resumed)" in line for line in log)
    assert run_state(rd, 3) == "done"


def test_mismatched_settings_refused_before_training(tmp_path, toy_task, capsys):
    out = tmp_path / "bench"
    assert main(_argv(out, seeds=1, budget=1)) == 0
    capsys.readouterr()
    refs_before = (out / "references.csv").read_text()
    assert main(_argv(out, "--max-epochs", "6", seeds=1, budget=1)) == 2
    err = capsys.readouterr().err
    assert "max_epochs=5" in err and "max_epochs=6" in err and "another --out" in err
    assert (out / "references.csv").read_text() == refs_before


def test_report_only_and_paper_column_for_real_and_stand_in_tasks(tmp_path, capsys):
    out = tmp_path / "empty"
    code = main(["bench", "--tasks", "lung_cancer_chemo,covid_bogota_synthetic,hea_fcc_rt",
                 "--policies", "nimmgen,greedy", "--seeds", "2", "--out", str(out),
                 "--task-option", "lung_cancer_chemo:n_patients=16", "--report-only", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["runs"] == {"ran": [], "resumed": [], "skipped": [], "errors": []}
    md = (out / "results.md").read_text()
    assert "| nimmgen | no valid model | - | - | - | 0/2 |" in md
    assert "| 0.08 |" in md  # lung cancer with chemo, comparable row
    assert "139.2 MPa" in md
    assert "333.9 (synthetic stand-in, not comparable)" in md and "**not comparable**" in md
    rows = _rows(out / "results.csv")
    assert len(rows) == 12 and {r["status"] for r in rows} == {"missing"}
    summary = report["summary"]
    assert summary["covid_bogota_synthetic"]["paper"]["comparable"] is False
    assert summary["lung_cancer_chemo"]["paper"]["test_rmse"] == 0.08
    assert summary["hea_fcc_rt"]["source"] == "real"


def test_paper_mapping():
    row, comparable = paper_row("influenza_usa")  # the paper's 4.81 is on a normalised scale
    assert row.test_rmse == 4.81 and not comparable and "normalised" in row.protocol
    row, comparable = paper_row("lung_cancer_chemo")
    assert comparable and "one-step" in row.protocol
    row, comparable = paper_row("mrsa_virginia_synthetic")
    assert row.label == "MRSA-Virginia" and row.test_rmse == 39.83 and not comparable
    assert paper_row("hea_bcc_temp")[0].unit == "MPa"
    assert paper_row("my_own_task") == (None, False)


def _node(i, val, finished, status=Status.OK):
    r = EvalResult(status, val=SplitScores(rmse=val, rmse_norm=val))
    return Node(id=i, parent=None, branch=0, operator="draft", state="done" if status is
                Status.OK else "failed", result=r, finished=finished)


def test_best_so_far_follows_finish_order():
    nodes = [_node(0, 5.0, 30.0), _node(1, float("nan"), 10.0, Status.RUNTIME_ERROR),
             _node(2, 3.0, 20.0), _node(3, 4.0, 40.0),
             Node(id=4, parent=None, branch=0, operator="draft")]  # still pending: not counted
    curve = best_so_far(nodes)
    assert math.isnan(curve[0]) and curve[1:] == [3.0, 3.0, 3.0]


def test_config_errors_name_the_problem(tmp_path, toy_task, capsys):
    def err(**kw):
        cfg = dict(tasks=[TOY], out=tmp_path / "x")
        cfg.update(kw)
        with pytest.raises(BenchError) as exc:
            BenchConfig(**cfg).validate()
        return str(exc.value)

    assert "unknown task 'nope'" in err(tasks=["nope"])
    assert "unknown policy 'best'" in err(policies=["best"])
    assert "seeds must be an integer >= 1" in err(seeds=0)
    assert "budget" in err(budget=0)
    assert "not among the benchmark's tasks" in err(task_options={"hea_fcc_rt": {"x": 1}})
    assert "listed more than once" in err(policies=["greedy", "greedy"])
    assert main(["bench", "--tasks", TOY, "--out", str(tmp_path / "y"),
                 "--task-option", "no_colon_here"]) == 2
    assert "TASK:KEY=VALUE" in capsys.readouterr().err
    assert main(["bench", "--tasks", TOY, "--out", str(tmp_path / "y"),
                 "--task-option", f"{TOY}:n_train=abc", "--seeds", "1"]) == 2
    assert "bad option for task" in capsys.readouterr().err
    assert not (tmp_path / "y" / "runs").exists()


def test_options_reach_only_tasks_that_take_them(tmp_path):
    cfg = BenchConfig(tasks=["lung_cancer_chemo", "hea_fcc_rt"], out=tmp_path,
                      options={"n_patients": 16},
                      task_options={"hea_fcc_rt": {"seed": 1}})
    cfg.validate()
    assert cfg.options_for("lung_cancer_chemo") == {"n_patients": 16}
    assert "n_patients" not in cfg.options_for("hea_fcc_rt")
    assert cfg.train_config(2).seed == 2
    assert cfg.train_config(2).max_epochs == TrainConfig().max_epochs
    empty = aggregate(BenchConfig(tasks=["hea_fcc_rt"], out=tmp_path / "agg", seeds=1,
                                  policies=["sampling"]))
    assert empty["hea_fcc_rt"]["checks"]["nimmgen_beats_prior"] is None
    assert os.path.exists(tmp_path / "agg" / "spread_hea_fcc_rt.png")

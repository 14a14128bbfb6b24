"""``nimm eval``: reference and file candidates through the isolated executor; --json output;
task options; one-line user errors."""
from __future__ import annotations

import json

import pytest

from nimm_jupyter import tasks
from nimm_jupyter.cli import main

from test_executor import PRIOR, tiny_task

pytestmark = pytest.mark.timeout(120)

TASK_NAME = "tiny_decay_cli_test"
BUILT: list[dict] = []


def _factory(**options):
    BUILT.append(dict(options))
    n = int(options.pop("n", 8))
    if options:
        raise TypeError(f"make_tiny() got an unexpected keyword argument {next(iter(options))!r}")
    print("building the task (this must not reach stdout)")
    return tiny_task(n=n, name=TASK_NAME)


@pytest.fixture(autouse=True)
def registered():
    tasks.register(TASK_NAME, _factory)
    BUILT.clear()
    yield
    tasks.unregister(TASK_NAME)


def test_reference_prior_json_is_one_object(capsys):
    code = main(["eval", TASK_NAME, "--reference", "prior", "--json", "--max-epochs", "40",
                 "--device", "cpu", "--seed", "3", "--option", "n=6"])
    out, err = capsys.readouterr()
    assert code == 0, err
    d = json.loads(out)  # exactly one JSON document, nothing else
    assert out.strip().count("\n") == 0
    assert d["status"] == "ok" and d["seed"] == 3 and d["device"] == "cpu"
    assert d["val"]["rmse"] < 0.3 and "k" in d["parameters"]
    assert BUILT == [{"n": 6}]
    assert "building the task" in err


def test_code_file_human_summary(capsys, tmp_path):
    f = tmp_path / "cand.py"
    f.write_text(PRIOR)
    code = main(["eval", TASK_NAME, "--code", str(f), "--max-epochs", "20", "--device", "cpu",
                 "--restarts", "2"])
    out, _ = capsys.readouterr()
    assert code == 0
    for text in ("status      ok", "RMSE", "train", "val", "test", "fitted      k =",
                 "device      cpu", "restarts 2", str(f)):
        assert text in out, text


def test_failed_candidate_exits_1_with_status(capsys, tmp_path):
    f = tmp_path / "loop.py"
    f.write_text(PRIOR.replace("        C = y_context", "        while True:\n            pass\n        C = y_context"))
    code = main(["eval", TASK_NAME, "--code", str(f), "--timeout", "2", "--json", "--device", "cpu"])
    d = json.loads(capsys.readouterr().out)
    assert code == 1 and d["status"] == "timeout"


@pytest.mark.parametrize("argv, needle", [
    (["eval", "no_such_task", "--reference", "prior"], "unknown task 'no_such_task'"),
    (["eval", TASK_NAME, "--code", "/nonexistent/cand.py"], "does not exist"),
    (["eval", TASK_NAME, "--reference", "hybrid"], "no hand-written hybrid"),
    (["eval", TASK_NAME, "--reference", "prior", "--option", "bogus=1"], "does not accept"),
    (["eval", TASK_NAME, "--reference", "prior", "--option", "novalue"], "KEY=VALUE"),
    (["eval", TASK_NAME, "--reference", "prior", "--device", "tpu"], "bad device"),
    (["eval", TASK_NAME, "--reference", "prior", "--restarts", "0"], "--restarts"),
])
def test_user_errors_are_one_line(capsys, argv, needle):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = [l for l in err.splitlines() if l.strip() and "building the task" not in l]
    assert len(lines) == 1 and lines[0].startswith("nimm eval: error:") and needle in lines[0], err


def test_reference_or_code_is_required(capsys):
    with pytest.raises(SystemExit):
        main(["eval", TASK_NAME])

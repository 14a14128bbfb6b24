"""A search whose process died reads as ``interrupted``, not ``running`` (issue 15 item 5)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from nimm_jupyter.cli import main
from nimm_jupyter.search.api import open_run
from nimm_jupyter.search.journal import Journal
from nimm_jupyter.search.rundir import RunDir

pytestmark = pytest.mark.timeout(60)

HOLD = "import fcntl, sys, time\nf = open(sys.argv[1], 'a+')\nfcntl.flock(f, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(60)\n"


def running_journal(run):
    j = Journal.for_run(run)
    j.init_search("r1", "lung_cancer", {}, {"budget": 3})
    j.close()


def test_running_without_a_lock_holder_is_interrupted(tmp_path, capsys):
    run = tmp_path / "run"
    running_journal(run)
    assert Journal.for_run(run, readonly=True).search_row()["status"] == "running"
    assert open_run(run).status == "interrupted"
    assert not RunDir(run).lock_path.exists()  # reading never creates the lock
    assert main(["show", str(run), "--json"]) == 0
    assert '"status": "interrupted"' in capsys.readouterr().out


def test_running_with_a_live_lock_holder_is_running(tmp_path):
    run = tmp_path / "run"
    running_journal(run)
    lock = RunDir(run).lock_path
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert RunDir(run).lock_held()
        assert open_run(run).status == "running"
    finally:
        holder.kill()
        holder.wait()
    assert not RunDir(run).lock_held()  # the OS dropped it with the process
    assert open_run(run).status == "interrupted"

"""A damaged journal (truncated, random bytes, a row with bad JSON) gives one clear CLI line
naming the file and what is wrong, and is never modified (issue 15 item 6)."""
from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import pytest

from nimm_jupyter.cli import main
from nimm_jupyter.modeling.result import EvalResult, SplitScores, Status
from nimm_jupyter.search.api import open_run
from nimm_jupyter.search.journal import Journal, JournalError
from nimm_jupyter.search.node import Node
from nimm_jupyter.search.rundir import RunDir

pytestmark = pytest.mark.timeout(60)


def make_run(run: Path) -> Path:
    j = Journal.for_run(run)
    j.init_search("r1", "lung_cancer", {}, {"budget": 3, "train": {"max_epochs": 3}})
    r = EvalResult(Status.OK, val=SplitScores(1.0, 0.1, {"y": 1.0}), parameters={"k": 0.3})
    j.save_node(Node(id=0, parent=None, branch=0, operator="draft", change="draft",
                     code="class Model: ...\n", state="done", result=r))
    j.close()
    return RunDir(run).journal_path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def damage_truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def damage_random(path: Path) -> None:
    path.write_bytes(os.urandom(8192))


def damage_json(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("UPDATE nodes SET result = '{\"status\": \"ok\", ' WHERE id = 0")
    db.commit()
    db.close()


def damage_empty(path: Path) -> None:
    path.write_bytes(b"")


@pytest.mark.parametrize("damage, words", [
    (damage_truncate, ("damaged",)),
    (damage_random, ("damaged", "not an SQLite database")),
    (damage_json, ("damaged", "node 0", "not valid JSON")),
    (damage_empty, ("damaged", "empty")),
])
@pytest.mark.parametrize("command", ["show", "resume"])
def test_damaged_journal_is_one_line_and_untouched(tmp_path, capsys, damage, words, command):
    run = tmp_path / "run"
    path = make_run(run)
    damage(path)
    before = digest(path)
    listing = sorted(p.name for p in run.iterdir())
    rc = main([command, str(run)])
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert str(path) in lines[0] and all(w in lines[0] for w in words), lines[0]
    assert "Traceback" not in err
    assert digest(path) == before  # never modified
    new = {p.name for p in run.iterdir()} - set(listing)
    # resume takes the run's lock first; a readable (valid SQLite) file may get SQLite's own
    # WAL side files from a reader, a broken one not even those.
    allowed = {"lock"} | ({"journal.sqlite-wal", "journal.sqlite-shm"} if damage is damage_json else set())
    assert new <= allowed, new


def test_healthy_journal_still_reads(tmp_path):
    run = tmp_path / "run"
    make_run(run)
    Journal.verify(RunDir(run).journal_path)
    assert open_run(run).nodes[0].result.parameters == {"k": 0.3}


def test_journal_error_names_the_file(tmp_path):
    path = make_run(tmp_path / "run")
    damage_random(path)
    with pytest.raises(JournalError, match="not an SQLite database") as info:
        Journal(path, readonly=True)
    assert str(path) in str(info.value)

"""The jail re-exposes what the interpreter reads, wherever it lies: under a directory a
foreign uid cannot enter (``/root``) or under a root the jail covers with its own tmpfs
(``/tmp``, as a CI clone with its virtual environment often is)."""
from __future__ import annotations

import sys

from nimm_jupyter.execution import oslayer


def test_paths_under_tmp_are_re_exposed_once(monkeypatch, tmp_path):
    venv = tmp_path / "clone" / ".venv" / "lib" / "site-packages"
    venv.mkdir(parents=True)
    clone = tmp_path / "clone"
    monkeypatch.setattr(oslayer, "_COVERED_ROOTS", (str(tmp_path),))
    monkeypatch.setattr(sys, "path", [str(clone), str(venv), ""])
    _, covered = oslayer._python_paths()
    assert covered == [str(clone)]  # the outer path carries the inner one


def test_outermost_keeps_only_roots():
    assert oslayer._outermost({"/tmp/a/b", "/tmp/a", "/tmp/ab", "/tmp/c/d"}) == \
        ["/tmp/a", "/tmp/ab", "/tmp/c/d"]


def test_a_covered_root_itself_is_never_put_back(monkeypatch, tmp_path):
    # ``python -m`` from /tmp puts /tmp itself on sys.path: re-attaching it would hide the
    # jail's own /tmp (and its work dir).
    (tmp_path / "work").mkdir()
    (tmp_path / "pkg").mkdir()
    monkeypatch.setattr(oslayer, "_COVERED_ROOTS", (str(tmp_path),))
    monkeypatch.setattr(oslayer, "JAIL_WORKDIR", str(tmp_path / "work"))
    monkeypatch.setattr(sys, "path", [str(tmp_path), str(tmp_path / "work"), str(tmp_path / "pkg")])
    _, covered = oslayer._python_paths()
    assert covered == [str(tmp_path / "pkg")]

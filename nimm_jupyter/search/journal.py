"""The run journal: every node, branch, event and proposer cost of a search in SQLite (WAL).

``run_dir/journal.sqlite`` is written by the search's runner thread only; each node update is
its own transaction, so a crash (even ``kill -9``) loses nothing that was completed, and
:func:`nimm_jupyter.search.api.resume` can continue from it. Readers (``nimm show``, the
widget) open their own connection.

A damaged journal (truncated, not SQLite at all, a row whose JSON does not parse) raises
:class:`JournalError` naming the file and what is wrong, and is never modified: readers use
a read-only connection, and a writer first checks an existing file read-only
(:meth:`Journal.verify`).

Secrets never reach the file: settings are sanitised and every text written passes through
:func:`scrub`, which removes the value of ``ANTHROPIC_API_KEY`` and anything shaped like an
API key.
"""
from __future__ import annotations

import json
import math
import os
import re
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterable

from .errors import SearchError
from .events import Event
from .layout import JOURNAL_NAME
from .node import Node
from .states import RunState
from .tree import Branch, Tree

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS search (
    run_id TEXT PRIMARY KEY, task_name TEXT NOT NULL, task_options TEXT NOT NULL,
    settings TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL,
    status TEXT NOT NULL, stop_reason TEXT, version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS branches (
    id INTEGER PRIMARY KEY, strategy TEXT, status TEXT NOT NULL, note TEXT, created REAL,
    rejects INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS nodes (
    id INTEGER PRIMARY KEY, parent INTEGER, branch INTEGER NOT NULL, operator TEXT NOT NULL,
    strategy TEXT, change TEXT, diff TEXT, code TEXT, state TEXT NOT NULL, status TEXT,
    val_score REAL, result TEXT, error TEXT, tokens_in INTEGER, tokens_out INTEGER, cost REAL,
    created REAL, started REAL, finished REAL, debug_depth INTEGER, proposer_meta TEXT);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, type TEXT NOT NULL, time REAL NOT NULL,
    data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS costs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, operation TEXT NOT NULL,
    node INTEGER, tokens_in INTEGER NOT NULL, tokens_out INTEGER NOT NULL, cost REAL NOT NULL,
    model TEXT, raw TEXT);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_NODE_COLUMNS = (
    "id", "parent", "branch", "operator", "strategy", "change", "diff", "code", "state",
    "status", "val_score", "result", "error", "tokens_in", "tokens_out", "cost", "created",
    "started", "finished", "debug_depth", "proposer_meta",
)

_KEY_SHAPES = re.compile(r"sk-ant-[A-Za-z0-9_\-]{8,}|sk-[A-Za-z0-9]{20,}")
_SECRET_NAMES = re.compile(r"(api[_-]?key|secret|password|passwd|auth|credential|bearer)", re.I)


class JournalError(SearchError):
    """The journal is missing, damaged or not what a run writes (the message names the file)."""


_SQLITE_MAGIC = b"SQLite format 3\x00"


def _check_header(path: Path) -> None:
    """Refuse, before SQLite sees it, a file that cannot be a journal."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(100)
    except OSError as exc:
        raise JournalError(f"journal {path} cannot be read: {exc.strerror}") from None
    if not head:
        raise JournalError(f"journal {path} is damaged: the file is empty")
    if not head.startswith(_SQLITE_MAGIC):
        raise JournalError(f"journal {path} is damaged: not an SQLite database")
    if len(head) < 100:
        raise JournalError(f"journal {path} is damaged: truncated to {len(head)} bytes")


def _json(path: Path, text: str | None, where: str) -> Any:
    try:
        return json.loads(text) if text is not None else None
    except (TypeError, ValueError) as exc:
        raise JournalError(f"journal {path} is damaged: {where} is not valid JSON ({exc})") from None


def scrub(text: str) -> str:
    """Remove API keys (the configured one and anything key-shaped) from ``text``."""
    if not text:
        return text
    for var in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "OPENAI_API_KEY"):
        key = os.environ.get(var, "")
        if len(key) >= 8 and key in text:
            text = text.replace(key, "[redacted]")
    return _KEY_SHAPES.sub("[redacted]", text)


def sanitise(settings: Any) -> Any:
    """A JSON-able copy of ``settings`` without secret-named entries or key-shaped text."""
    if isinstance(settings, dict):
        return {str(k): sanitise(v) for k, v in settings.items()
                if not _SECRET_NAMES.search(str(k))}
    if isinstance(settings, (list, tuple)):
        return [sanitise(v) for v in settings]
    if isinstance(settings, str):
        return scrub(settings)
    if isinstance(settings, float) and not math.isfinite(settings):
        return None
    if settings is None or isinstance(settings, (bool, int, float)):
        return settings
    if isinstance(settings, Path):
        return str(settings)
    return scrub(repr(settings))


def _dumps(obj: Any) -> str:
    return scrub(json.dumps(obj, default=_json_default, allow_nan=True))


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "value"):
        return obj.value
    if isinstance(obj, Path):
        return str(obj)
    return repr(obj)


class Journal:
    """One run's SQLite journal. Writes are serialised by a lock (one writer thread expected)."""

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        if readonly:
            if not self.path.exists():
                raise JournalError(f"no journal at {self.path}")
            _check_header(self.path)
            self._db = self._connect_readonly()
        else:
            if self.path.exists():
                self.verify(self.path)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30,
                                       isolation_level=None)
            # WAL survives a killed process; NORMAL sync is durable against process crashes.
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()

    def _connect_readonly(self) -> sqlite3.Connection:
        """``mode=ro`` where it works; else (a WAL journal whose writer was killed before it
        created the shared-memory file) a plain connection that only reads. The file itself is
        checked first through an ``immutable`` connection, which creates no side files."""
        uri = self.path.resolve().as_uri()
        try:
            probe = sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True)
            try:
                probe.execute("SELECT count(*) FROM sqlite_master").fetchone()
            finally:
                probe.close()
        except sqlite3.DatabaseError as exc:
            raise JournalError(f"journal {self.path} is damaged: {exc}") from None
        try:
            db = sqlite3.connect(f"{uri}?mode=ro", uri=True,
                                 check_same_thread=False, timeout=10, isolation_level=None)
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return db
        except sqlite3.DatabaseError as exc:
            if "not a database" in str(exc) or "malformed" in str(exc):
                raise JournalError(f"journal {self.path} is damaged: {exc}") from None
        db = sqlite3.connect(self.path, check_same_thread=False, timeout=10, isolation_level=None)
        db.execute("PRAGMA query_only=1")
        return db

    @classmethod
    def verify(cls, path: str | Path) -> None:
        """Read all of an existing journal read-only; :class:`JournalError` if it is damaged."""
        journal = cls(path, readonly=True)
        try:
            journal._rows("PRAGMA quick_check")
            journal.search_row()
            journal.load_tree()
            journal.events()
        finally:
            journal.close()

    # -- lifecycle -----------------------------------------------------------------------
    @classmethod
    def for_run(cls, run_dir: str | Path, *, readonly: bool = False) -> "Journal":
        return cls(Path(run_dir) / JOURNAL_NAME, readonly=readonly)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _tx(self, statements: Iterable[tuple[str, tuple]]) -> None:
        if self.readonly:
            raise JournalError("journal opened read-only")
        with self._lock:
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                for sql, params in statements:
                    cur.execute(sql, params)
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

    # -- writes --------------------------------------------------------------------------
    def init_search(self, run_id: str, task_name: str, task_options: dict[str, Any],
                    settings: dict[str, Any], status: RunState = RunState.RUNNING) -> None:
        now = time.time()
        self._tx([(
            "INSERT INTO search (run_id, task_name, task_options, settings, created, updated,"
            " status, stop_reason, version) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?)",
            (run_id, task_name, _dumps(sanitise(task_options)), _dumps(sanitise(settings)),
             now, now, status, SCHEMA_VERSION),
        )])

    def update_search(self, *, status: RunState | None = None, stop_reason: str | None = None,
                      settings: dict[str, Any] | None = None) -> None:
        """Change the search record; a run set running again loses its old stop reason."""
        sets, params = ["updated = ?"], [time.time()]
        if status is not None:
            sets.append("status = ?")
            params.append(status)
        if stop_reason is not None or status == RunState.RUNNING:
            sets.append("stop_reason = ?")
            params.append(stop_reason)
        if settings is not None:
            sets.append("settings = ?")
            params.append(_dumps(sanitise(settings)))
        self._tx([(f"UPDATE search SET {', '.join(sets)}", tuple(params))])

    def _node_stmt(self, node: Node) -> tuple[str, tuple]:
        r = node.result
        score = node.score if node.ok and math.isfinite(node.score) else None
        values = (
            node.id, node.parent, node.branch, node.operator, scrub(node.strategy or "") or None,
            scrub(node.change), scrub(node.diff), scrub(node.code), node.state, node.status,
            score, _dumps(r.to_dict()) if r is not None else None, scrub(node.error),
            node.tokens_in, node.tokens_out, node.cost, node.created, node.started,
            node.finished, node.debug_depth, _dumps(node.proposer_meta),
        )
        cols = ", ".join(_NODE_COLUMNS)
        marks = ", ".join("?" for _ in _NODE_COLUMNS)
        return f"INSERT OR REPLACE INTO nodes ({cols}) VALUES ({marks})", values

    @staticmethod
    def _event_stmt(event: Event) -> tuple[str, tuple]:
        return ("INSERT INTO events (type, time, data) VALUES (?, ?, ?)",
                (event.type, event.time, _dumps(event.data)))

    def save_node(self, node: Node, events: Iterable[Event] = (),
                  cost: dict[str, Any] | None = None) -> None:
        """Write ``node`` (with the events about it and the cost of proposing it) in one
        transaction, so a crash never leaves a node without its cost or vice versa."""
        stmts = [self._node_stmt(node), *(self._event_stmt(e) for e in events)]
        if cost is not None:
            stmts.append(self._cost_stmt(node=node.id, **cost))
        self._tx(stmts)

    def save_branch(self, branch: Branch, events: Iterable[Event] = ()) -> None:
        d = branch.to_dict()
        self._tx([(
            "INSERT OR REPLACE INTO branches (id, strategy, status, note, created, rejects)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (branch.id, _dumps(d["strategy"]), branch.status, scrub(branch.note),
             branch.created, branch.rejects),
        ), *(self._event_stmt(e) for e in events)])

    def append_event(self, event: Event) -> None:
        self._tx([self._event_stmt(event)])

    @staticmethod
    def _cost_stmt(operation: str, node: int | None, tokens_in: int, tokens_out: int,
                   cost: float, model: str | None, raw: str = "") -> tuple[str, tuple]:
        return (
            "INSERT INTO costs (time, operation, node, tokens_in, tokens_out, cost, model, raw)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (time.time(), operation, node, int(tokens_in or 0), int(tokens_out or 0),
             float(cost or 0.0), model, scrub(raw or "")),
        )

    def add_cost(self, operation: str, node: int | None, tokens_in: int, tokens_out: int,
                 cost: float, model: str | None, raw: str = "") -> None:
        """Record one proposer call (tokens, USD, model, scrubbed response text)."""
        self._tx([self._cost_stmt(operation, node, tokens_in, tokens_out, cost, model, raw)])

    def set_meta(self, key: str, value: Any) -> None:
        self._tx([("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                   (key, _dumps(value)))])

    # -- reads ---------------------------------------------------------------------------
    def _rows(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                rows = list(self._db.execute(sql, params))
            except sqlite3.DatabaseError as exc:
                raise JournalError(f"journal {self.path} is damaged: {exc}") from None
        if sql.startswith("PRAGMA quick_check") and rows and rows[0][0] != "ok":
            raise JournalError(f"journal {self.path} is damaged: {rows[0][0]}")
        return rows

    def search_row(self) -> dict[str, Any]:
        rows = self._rows("SELECT * FROM search")
        if not rows:
            raise JournalError(f"journal {self.path} has no search record")
        d = dict(rows[0])
        try:
            d["status"] = RunState(d["status"])
        except ValueError:
            raise JournalError(f"journal {self.path} is damaged: unknown run status "
                               f"{str(d['status'])[:40]!r}") from None
        d["task_options"] = _json(self.path, d["task_options"], "the search's task options")
        d["settings"] = _json(self.path, d["settings"], "the search's settings")
        return d

    def get_meta(self, key: str, default: Any = None) -> Any:
        rows = self._rows("SELECT value FROM meta WHERE key = ?", (key,))
        return _json(self.path, rows[0]["value"], f"meta {key!r}") if rows else default

    def load_nodes(self) -> list[Node]:
        nodes = []
        for row in self._rows("SELECT * FROM nodes ORDER BY id"):
            d = dict(row)
            where = f"node {d['id']}"
            d["result"] = _json(self.path, d["result"], f"{where}'s result") if d["result"] else None
            d["proposer_meta"] = _json(self.path, d["proposer_meta"] or "{}", f"{where}'s proposer_meta")
            d["error"] = d["error"] or ""
            d["change"] = d["change"] or ""
            d["diff"] = d["diff"] or ""
            d["code"] = d["code"] or ""
            try:
                nodes.append(Node.from_dict(d))
            except (KeyError, TypeError, ValueError) as exc:
                raise JournalError(f"journal {self.path} is damaged: {where} cannot be read "
                                   f"({type(exc).__name__}: {str(exc)[:200]})") from None
        return nodes

    def load_branches(self) -> list[Branch]:
        out = []
        for row in self._rows("SELECT * FROM branches ORDER BY id"):
            d = dict(row)
            where = f"branch {d['id']}'s strategy"
            d["strategy"] = _json(self.path, d["strategy"], where) if d["strategy"] else None
            try:
                out.append(Branch.from_dict(d))
            except (KeyError, TypeError, ValueError) as exc:
                raise JournalError(f"journal {self.path} is damaged: branch {d['id']} cannot be "
                                   f"read ({type(exc).__name__}: {str(exc)[:200]})") from None
        return out

    def load_tree(self) -> Tree:
        tree = Tree()
        for b in self.load_branches():
            tree.branches[b.id] = b
        for n in self.load_nodes():
            tree.nodes[n.id] = n
        tree.strategies_exhausted = bool(self.get_meta("strategies_exhausted", False))
        return tree

    def events(self, type: str | None = None) -> list[dict[str, Any]]:
        sql, params = "SELECT * FROM events", ()
        if type is not None:
            sql, params = sql + " WHERE type = ?", (type,)
        return [{"seq": r["seq"], "type": r["type"], "time": r["time"],
                 "data": _json(self.path, r["data"], f"event {r['seq']}")}
                for r in self._rows(sql + " ORDER BY seq", params)]

    def costs(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._rows("SELECT * FROM costs ORDER BY seq")]

    def totals(self) -> dict[str, float]:
        """Tokens and USD over every proposer call recorded (all sessions)."""
        row = self._rows("SELECT COALESCE(SUM(tokens_in), 0) AS ti, COALESCE(SUM(tokens_out), 0)"
                         " AS tout, COALESCE(SUM(cost), 0.0) AS c FROM costs")[0]
        return {"tokens_in": int(row["ti"]), "tokens_out": int(row["tout"]), "cost": float(row["c"])}

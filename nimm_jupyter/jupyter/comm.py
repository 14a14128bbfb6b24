"""Kernel end of the cell-insertion comm ``nimm_jupyter.cells`` (protocol in docs/JUPYTER.md).

The messages are defined once, in ``cells_protocol.schema.json`` beside this module: the
kernel validates what it sends and what it receives against it, and the extension's
TypeScript types are generated from it.

The JupyterLab extension owns a comm target named :data:`TARGET`. The kernel cannot ask
whether the frontend has that target while a cell is executing (replies are only read
between cells), so availability is learnt by a handshake: on first use the kernel opens a
comm to the target; a frontend that has it answers ``{"type": "hello", "version": 1}``; one
that lacks it closes the comm. A frontend may also open the comm itself (the kernel
registers the same target name), which counts as a hello.

For the same reason the extension's reply to an ``insert_cells`` request (an ``ack``: how
many cells it inserted, or why none) reaches the kernel only after the cell that asked has
finished. :meth:`CellChannel.insert_cells` therefore returns an :class:`InsertOutcome` that
is final when the reply is already there and ``pending`` otherwise, and calls ``on_reply``
with the final outcome when the reply arrives; :func:`insert_and_report` shows it as a line
of the cell's output that is updated in place.
"""
from __future__ import annotations

import enum
import json
import uuid
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any, Callable

__all__ = ["TARGET", "PROTOCOL_VERSION", "InsertStatus", "InsertOutcome", "CellChannel",
           "insert_message", "insert_and_report", "current_cell_id", "protocol_schema",
           "validate_message"]


@lru_cache(maxsize=1)
def protocol_schema() -> dict[str, Any]:
    """The JSON schema of the ``nimm_jupyter.cells`` messages (shipped in the package)."""
    text = (resources.files(__package__) / "cells_protocol.schema.json").read_text("utf-8")
    return json.loads(text)


TARGET: str = protocol_schema()["x-comm-target"]
PROTOCOL_VERSION: int = protocol_schema()["$defs"]["version"]["const"]
_ROLES: tuple[str, ...] = tuple(protocol_schema()["$defs"]["role"]["enum"])
_PENDING_LIMIT = 20  # unanswered requests remembered (older ones are dropped)


@lru_cache(maxsize=None)
def _validator(kind: str) -> Any:
    import jsonschema

    schema = dict(protocol_schema())
    schema.pop("oneOf")
    schema["$ref"] = f"#/$defs/{kind}"
    return jsonschema.Draft202012Validator(schema)


def validate_message(kind: str, data: Any) -> str | None:
    """Why ``data`` is not a valid ``kind`` message (``hello``, ``insert_cells``, ``ack``),
    or None when it is."""
    import jsonschema

    error = jsonschema.exceptions.best_match(_validator(kind).iter_errors(data))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    return f"{where + ': ' if where else ''}{error.message}"


class InsertStatus(str, enum.Enum):
    """Where an insert request stands; ``PENDING`` until the extension's reply is read."""

    UNAVAILABLE = "unavailable"  # not sent: no extension listening, or no anchor cell id
    PENDING = "pending"  # sent; the extension's reply has not been read yet
    INSERTED = "inserted"  # the extension inserted the cells
    FAILED = "failed"  # the extension inserted nothing (or sent a malformed reply)


@dataclass(frozen=True)
class InsertOutcome:
    """What became of one ``insert_cells`` request: ``requested`` cells, ``inserted`` of them.

    ``error`` says why nothing was inserted (or why it was not sent).
    """

    status: InsertStatus
    requested: int
    inserted: int = 0
    error: str | None = None
    request_id: str | None = None

    @property
    def sent(self) -> bool:
        """Whether the request reached a listening extension (the caller need not fall back)."""
        return self.status is not InsertStatus.UNAVAILABLE

    def message(self) -> str:
        """One line for the user."""
        if self.status is InsertStatus.INSERTED:
            return f"inserted {self.inserted} cells below the search cell"
        if self.status is InsertStatus.PENDING:
            return (f"sent {self.requested} cells to the notebook extension; waiting for it "
                    "to confirm the insertion")
        if self.status is InsertStatus.FAILED:
            return (f"the notebook extension did not insert the {self.requested} cells: "
                    f"{self.error}; `%nimm save PATH.ipynb` writes them to a notebook file")
        return f"cells not sent to the notebook extension: {self.error}"


def current_cell_id(shell: Any) -> str | None:
    """The id of the notebook cell whose execution is running now (None outside a kernel).

    JupyterLab and Notebook 7 put it in the execute request's metadata as ``cellId``.
    """
    kernel = getattr(shell, "kernel", None)
    if kernel is None:
        return None
    parent: Any = None
    try:
        parent = kernel.get_parent("shell")
    except TypeError:  # ipykernel < 6.? takes no channel argument
        parent = kernel.get_parent()
    except Exception:
        parent = None
    if not parent:
        parent = getattr(shell, "parent_header", None)
    meta = (parent or {}).get("metadata") or {}
    cell_id = meta.get("cellId") or meta.get("cell_id")
    return str(cell_id) if cell_id else None


def insert_message(run_id: str, cells: list[dict[str, Any]], after_cell_id: str,
                   replace: bool = True, request_id: str | None = None) -> dict[str, Any]:
    """The ``insert_cells`` message; ``cells`` are notebook cells (dicts or NotebookNodes).

    Raises ``ValueError`` when the message would not match the protocol schema.
    """
    out = []
    for cell in cells:
        meta = dict(cell.get("metadata", {}))
        nimm = dict(meta.get("nimm", {}))
        if nimm.get("role") not in _ROLES:
            raise ValueError(f"cell without a valid metadata.nimm.role: {nimm!r}")
        source = cell["source"]
        out.append({
            "cell_type": cell["cell_type"],
            "source": "".join(source) if isinstance(source, list) else source,
            "metadata": {"nimm": nimm},
        })
    message = {
        "type": "insert_cells",
        "version": PROTOCOL_VERSION,
        "after_cell_id": after_cell_id,
        "run_id": run_id,
        "cells": out,
        "replace": bool(replace),
    }
    if request_id is not None:
        message["request_id"] = request_id
    problem = validate_message("insert_cells", message)
    if problem:
        raise ValueError(f"invalid insert_cells message: {problem}")
    return message


OnReply = Callable[[InsertOutcome], None]


@dataclass
class _Request:
    """An insert request awaiting the extension's reply."""

    run_id: str
    sent: InsertOutcome
    on_reply: OnReply | None
    final: InsertOutcome | None = None


class CellChannel:
    """Sends ``insert_cells`` messages to the frontend extension when it is there.

    ``available`` becomes True after the frontend's hello; until then callers fall back to
    ``set_next_input`` or writing a notebook file.
    """

    def __init__(self, shell: Any):
        self.shell = shell
        self.kernel = getattr(shell, "kernel", None)
        self.available = False
        self.replies: list[dict[str, Any]] = []  # frontend answers (insert results, errors)
        self._pending: dict[str, _Request] = {}  # by request id, oldest first
        self._comm: Any = None
        self._registered = False

    # -- handshake -------------------------------------------------------------------
    def start(self) -> None:
        """Register the target and open the probe comm (idempotent; no-op outside a kernel)."""
        if self.kernel is None:
            return
        if not self._registered:
            try:
                from comm import get_comm_manager

                get_comm_manager().register_target(TARGET, self._on_frontend_open)
                self._registered = True
            except Exception:  # no comm manager: plain IPython
                return
        if self._comm is None:
            try:
                from comm import create_comm

                self._attach(create_comm(target_name=TARGET,
                                         data={"type": "hello", "version": PROTOCOL_VERSION}))
            except Exception:
                self._comm = None

    def _attach(self, comm: Any) -> None:
        self._comm = comm
        comm.on_msg(self._on_msg)
        comm.on_close(self._on_close)

    def _on_frontend_open(self, comm: Any, open_msg: dict[str, Any]) -> None:
        self._attach(comm)
        self.available = True

    def _on_msg(self, msg: dict[str, Any]) -> None:
        data = (msg.get("content") or {}).get("data") or {}
        if data.get("type") == "hello":
            self.available = True
            return
        self.replies.append(dict(data))
        del self.replies[:-20]
        if data.get("type") == "ack":
            self._on_ack(data)

    def _on_ack(self, data: dict[str, Any]) -> None:
        key = data.get("request_id")
        if key is None:  # an extension built before request ids: the run's oldest request
            key = next((k for k, r in self._pending.items() if r.run_id == data.get("run_id")),
                       None)
        if key not in self._pending:  # unknown, or already settled (e.g. when the comm closed)
            return
        problem = validate_message("ack", data)
        if problem:
            self._resolve(key, InsertStatus.FAILED, 0, f"malformed reply ({problem})")
        elif data.get("error") or not data.get("inserted"):
            self._resolve(key, InsertStatus.FAILED, int(data.get("inserted") or 0),
                          str(data.get("error") or "it inserted no cells"))
        else:
            self._resolve(key, InsertStatus.INSERTED, int(data["inserted"]), None)

    def _on_close(self, msg: dict[str, Any]) -> None:
        self.available = False
        self._comm = None
        for key in list(self._pending):
            self._resolve(key, InsertStatus.FAILED, 0, "the extension closed the comm before replying")

    def _resolve(self, key: str, status: InsertStatus, inserted: int, error: str | None) -> None:
        request = self._pending.pop(key)
        request.final = InsertOutcome(status, request.sent.requested, inserted, error, key)
        if request.on_reply is not None:
            request.on_reply(request.final)

    # -- sending ---------------------------------------------------------------------
    def insert_cells(self, run_id: str, cells: list[dict[str, Any]], after_cell_id: str | None,
                     replace: bool = True, *, on_reply: OnReply | None = None) -> InsertOutcome:
        """Ask the frontend to insert ``cells`` below the cell ``after_cell_id``.

        Returns ``UNAVAILABLE`` (not sent) when no extension is listening or the search
        cell's id is unknown (the extension anchors insertions on it): the caller falls back.
        Otherwise the outcome is final if the extension's reply is already in, else
        ``PENDING``, and ``on_reply`` gets the final outcome when the reply is read.
        """
        if not (self.available and self._comm is not None):
            return InsertOutcome(InsertStatus.UNAVAILABLE, len(cells),
                                 error="no notebook extension is listening")
        if not after_cell_id:
            return InsertOutcome(InsertStatus.UNAVAILABLE, len(cells),
                                 error="the search cell's id is unknown")
        key = uuid.uuid4().hex[:16]
        message = insert_message(run_id, cells, after_cell_id, replace, request_id=key)
        request = _Request(run_id, InsertOutcome(InsertStatus.PENDING, len(cells), request_id=key),
                           on_reply)
        self._pending[key] = request
        while len(self._pending) > _PENDING_LIMIT:
            self._pending.pop(next(iter(self._pending)))
        self._comm.send(message)
        return request.final or request.sent  # final when the reply came during send


def insert_and_report(channel: CellChannel, run_id: str, cells: list[dict[str, Any]],
                      after_cell_id: str | None, replace: bool = True) -> InsertOutcome:
    """:meth:`CellChannel.insert_cells`, with its outcome shown in the running cell's output.

    A final outcome is printed; a pending one is displayed as a line that the extension's
    reply updates in place (the reply is read after this cell ends). Nothing is shown when
    the request was not sent (the caller falls back).
    """
    from IPython.display import Pretty, display

    handle: Any = None

    def update(outcome: InsertOutcome) -> None:
        if handle is not None:
            handle.update(Pretty(outcome.message()))

    outcome = channel.insert_cells(run_id, cells, after_cell_id, replace, on_reply=update)
    if outcome.status is InsertStatus.PENDING:
        # JupyterLab routes the update to this output by its display id after the cell ends.
        handle = display(Pretty(f"{outcome.message()} (this line is updated when it does)"),
                         display_id=True)
    elif outcome.sent:
        print(outcome.message())
    return outcome

"""Kernel end of the cell-insertion comm ``nimm_jupyter.cells`` (protocol in docs/JUPYTER.md).

The JupyterLab extension owns a comm target named :data:`TARGET`. The kernel cannot ask
whether the frontend has that target while a cell is executing (replies are only read
between cells), so availability is learnt by a handshake: on first use the kernel opens a
comm to the target; a frontend that has it answers ``{"type": "hello", "version": 1}``; one
that lacks it closes the comm. A frontend may also open the comm itself (the kernel
registers the same target name), which counts as a hello.
"""
from __future__ import annotations

from typing import Any

TARGET = "nimm_jupyter.cells"
PROTOCOL_VERSION = 1
_ROLES = ("header", "model", "load", "plot")  # nimm_jupyter.export.ROLES


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


def insert_message(run_id: str, cells: list[dict[str, Any]], after_cell_id: str | None,
                   replace: bool = True) -> dict[str, Any]:
    """The ``insert_cells`` message; ``cells`` are notebook cells (dicts or NotebookNodes)."""
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
    return {
        "type": "insert_cells",
        "version": PROTOCOL_VERSION,
        "after_cell_id": after_cell_id,
        "run_id": run_id,
        "cells": out,
        "replace": bool(replace),
    }


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
        else:
            self.replies.append(dict(data))
            del self.replies[:-20]

    def _on_close(self, msg: dict[str, Any]) -> None:
        self.available = False
        self._comm = None

    # -- sending ---------------------------------------------------------------------
    def insert_cells(self, run_id: str, cells: list[dict[str, Any]], after_cell_id: str | None,
                     replace: bool = True) -> bool:
        """Ask the frontend to insert ``cells``; False when no extension is listening or the
        search cell's id is unknown (the extension anchors insertions on it)."""
        if not (self.available and self._comm is not None and after_cell_id):
            return False
        self._comm.send(insert_message(run_id, cells, after_cell_id, replace))
        return True

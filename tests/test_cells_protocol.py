"""The ``nimm_jupyter.cells`` comm: one schema, the TypeScript generated from it, and the
kernel's record of what the extension actually inserted."""
from __future__ import annotations

import importlib.util
import json
import os
import queue
import time
from pathlib import Path

import pytest

from nimm_jupyter.export import ROLES
from nimm_jupyter.jupyter import comm as cells
from nimm_jupyter.jupyter.comm import CellChannel, InsertStatus, insert_and_report

ROOT = Path(__file__).resolve().parents[1]
CELL = {"cell_type": "code", "source": ["a = 1\n", "b = 2"],
        "metadata": {"nimm": {"run_id": "r", "node_id": 1, "role": "model"}}}


def generator():
    path = ROOT / "labextension" / "scripts" / "protocol_types.py"
    spec = importlib.util.spec_from_file_location("protocol_types", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_typescript_types_are_generated_from_the_shipped_schema():
    gen = generator()
    assert gen.SCHEMA.samefile(Path(cells.__file__).with_name("cells_protocol.schema.json"))
    expected = gen.render(cells.protocol_schema())
    assert gen.OUTPUT.read_text(encoding="utf-8") == expected, \
        "labextension/src/protocol_schema.ts is stale: run python labextension/scripts/protocol_types.py"
    assert "export interface IInsertCellsMessage {" in expected
    assert "  request_id?: string;" in expected and "  inserted: number;" in expected


def test_generator_refuses_schema_it_cannot_translate():
    schema = json.loads(json.dumps(cells.protocol_schema()))
    schema["$defs"]["ack"]["properties"]["inserted"]["pattern"] = "x"
    with pytest.raises(ValueError, match="pattern"):
        generator().render(schema)


def test_schema_matches_the_kernel_constants():
    defs = cells.protocol_schema()["$defs"]
    assert tuple(defs["role"]["enum"]) == ROLES
    assert cells.TARGET == "nimm_jupyter.cells" and cells.PROTOCOL_VERSION == 1
    assert cells.validate_message("hello", {"type": "hello", "version": 1}) is None
    assert "version" in cells.validate_message("hello", {"type": "hello", "version": 2})


def test_outgoing_messages_are_validated():
    msg = cells.insert_message("r", [CELL], "c1", request_id="q1")
    assert cells.validate_message("insert_cells", msg) is None
    assert msg["request_id"] == "q1" and msg["cells"][0]["source"] == "a = 1\nb = 2"
    with pytest.raises(ValueError, match="after_cell_id"):
        cells.insert_message("r", [CELL], "")
    with pytest.raises(ValueError, match="minItems|non-empty|should be non-empty"):
        cells.insert_message("r", [], "c1")
    bad = {**CELL, "metadata": {"nimm": {"run_id": "r", "node_id": "one", "role": "model"}}}
    with pytest.raises(ValueError, match="node_id"):
        cells.insert_message("r", [bad], "c1")


class FakeComm:
    def __init__(self, reply=None):
        self.sent, self.reply = [], reply

    def send(self, data):
        self.sent.append(data)
        if self.reply:
            self.msg({"content": {"data": self.reply(data)}})

    def on_msg(self, fn):
        self.msg = fn

    def on_close(self, fn):
        self.close = fn


def channel(reply=None):
    ch = CellChannel(object())
    fake = FakeComm(reply)
    ch._attach(fake)
    fake.msg({"content": {"data": {"type": "hello", "version": 1}}})
    return ch, fake


def ack(request, **fields):
    return {"content": {"data": {"type": "ack", "version": 1, "run_id": request["run_id"],
                                 "request_id": request["request_id"], **fields}}}


def test_outcome_follows_the_reply():
    ch, fake = channel()
    seen = []
    out = ch.insert_cells("r", [CELL, CELL], "c1", on_reply=seen.append)
    assert out.status is InsertStatus.PENDING and out.sent and out.requested == 2
    assert "waiting" in out.message() and "inserted" not in out.message().split(";")[0]
    fake.msg(ack(fake.sent[0], inserted=2))
    assert [(o.status, o.inserted, o.request_id) for o in seen] == \
        [(InsertStatus.INSERTED, 2, out.request_id)]
    assert seen[0].message() == "inserted 2 cells below the search cell"

    out = ch.insert_cells("r", [CELL], "c1", on_reply=seen.append)
    fake.msg(ack(fake.sent[1], inserted=0, error="no cell with id c1"))
    assert seen[-1].status is InsertStatus.FAILED and "no cell with id c1" in seen[-1].message()

    ch.insert_cells("r", [CELL], "c1", on_reply=seen.append)
    fake.msg(ack(fake.sent[2], inserted="many"))
    assert seen[-1].status is InsertStatus.FAILED and "malformed reply" in seen[-1].error

    ch.insert_cells("r", [CELL], "c1", on_reply=seen.append)
    fake.close({})
    assert seen[-1].status is InsertStatus.FAILED and "closed" in seen[-1].error
    assert ch.insert_cells("r", [CELL], "c1").status is InsertStatus.UNAVAILABLE


def test_reply_without_request_id_matches_the_oldest_request_of_its_run():
    ch, fake = channel()
    seen = []
    ch.insert_cells("r", [CELL], "c1", on_reply=seen.append)
    ch.insert_cells("s", [CELL], "c1", on_reply=seen.append)
    fake.msg({"content": {"data": {"type": "ack", "version": 1, "run_id": "s", "inserted": 1}}})
    assert [(o.status, o.request_id) for o in seen] == \
        [(InsertStatus.INSERTED, fake.sent[1]["request_id"])]
    fake.msg({"content": {"data": {"type": "ack", "version": 1, "run_id": "x", "inserted": 1}}})
    assert len(seen) == 1  # no request of run x: nothing resolved


def test_a_reply_already_in_makes_the_outcome_final():
    ch, _ = channel(reply=lambda m: {"type": "ack", "version": 1, "run_id": m["run_id"],
                                     "request_id": m["request_id"], "inserted": 1})
    out = ch.insert_cells("r", [CELL], "c1")
    assert out.status is InsertStatus.INSERTED and out.inserted == 1


def test_insert_and_report_updates_its_line_when_the_reply_comes(monkeypatch, capsys):
    shown = []

    class Handle:
        def update(self, obj):
            shown.append(("update", obj.data))

    def display(obj, display_id=None):
        assert display_id is True
        shown.append(("display", obj.data))
        return Handle()

    monkeypatch.setattr("IPython.display.display", display)
    ch, fake = channel()
    out = insert_and_report(ch, "r", [CELL], "c1")
    assert out.status is InsertStatus.PENDING and shown[0][0] == "display"
    assert "waiting for it to confirm" in shown[0][1]
    fake.msg(ack(fake.sent[0], inserted=0, error="notebook closed"))
    assert shown[1][0] == "update" and "notebook closed" in shown[1][1]
    assert capsys.readouterr().out == ""
    assert insert_and_report(CellChannel(object()), "r", [CELL], "c1").sent is False
    assert len(shown) == 2


@pytest.mark.timeout(120)
def test_a_real_kernel_updates_the_export_line_after_the_cell(tmp_path):
    """With ipykernel the reply is read only after the exporting cell ends; the line it
    displayed is then updated in place (update_display_data with the same display id)."""
    jupyter_client = pytest.importorskip("jupyter_client")
    km, kc = jupyter_client.manager.start_new_kernel(kernel_name="python3", cwd=str(tmp_path),
                                                     env=dict(os.environ))
    try:
        def iopub(match, timeout=30.0):
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                try:
                    msg = kc.get_iopub_msg(timeout=max(0.1, end - time.monotonic()))
                except queue.Empty:
                    break
                if match(msg):
                    return msg
            raise AssertionError("no matching iopub message")

        def comm_msg(comm_id, data):
            kc.shell_channel.send(kc.session.msg("comm_msg", {"comm_id": comm_id, "data": data}))

        kc.execute("from nimm_jupyter.jupyter.comm import CellChannel, insert_and_report\n"
                   "ch = CellChannel(get_ipython()); ch.start()")
        opened = iopub(lambda m: m["msg_type"] == "comm_open")
        comm_id = opened["content"]["comm_id"]
        assert opened["content"]["target_name"] == "nimm_jupyter.cells"
        comm_msg(comm_id, {"type": "hello", "version": 1})
        kc.execute_interactive("assert ch.available", timeout=30)

        cell = json.dumps(CELL)
        msg_id = kc.execute(f"out = insert_and_report(ch, 'r', [{cell}], 'anchor')")
        sent = iopub(lambda m: m["msg_type"] == "comm_msg")["content"]["data"]
        line = iopub(lambda m: m["msg_type"] == "display_data")
        assert "waiting for it to confirm" in line["content"]["data"]["text/plain"]
        display_id = line["content"]["transient"]["display_id"]
        reply = kc.get_shell_msg(timeout=30)
        assert reply["parent_header"]["msg_id"] == msg_id and reply["content"]["status"] == "ok"

        comm_msg(comm_id, {"type": "ack", "version": 1, "run_id": "r",
                           "request_id": sent["request_id"], "inserted": 1})
        update = iopub(lambda m: m["msg_type"] == "update_display_data")
        assert update["content"]["transient"]["display_id"] == display_id
        assert update["content"]["data"]["text/plain"] == "inserted 1 cells below the search cell"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)

"""The proposers registry: spec parsing (``replay:FILE``, ``auto``) and building by name."""
from __future__ import annotations

import json

import pytest

from nimm_jupyter.proposers import PROPOSER_NAMES, make_proposer, parse_spec
from nimm_jupyter.proposers.replay import ReplayProposer, load_records, write_records


def test_parse_spec_reads_replay_files_and_resolves_auto(monkeypatch):
    assert parse_spec("replay:runs/a b.jsonl") == ("replay", {"path": "runs/a b.jsonl"})
    assert parse_spec("offline") == ("offline", {})
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    assert parse_spec("auto") == ("offline", {})
    monkeypatch.setenv("ANTHROPIC_API_KEY", "not-a-real-key")
    assert parse_spec("auto") == ("anthropic", {})
    with pytest.raises(TypeError, match="name"):
        parse_spec(3)


def test_make_proposer_builds_each_name_or_says_what_is_wrong(tmp_path, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    assert set(PROPOSER_NAMES) == {"auto", "offline", "anthropic", "openai", "replay"}
    assert make_proposer("auto", seed=1).name == "offline"
    records = [{"operator": "draft", "strategy": "s", "change": "c", "code": "x = 1\n"}]
    path = tmp_path / "r.jsonl"
    write_records(records, path)
    assert load_records(path) == records
    assert json.loads(path.read_text().splitlines()[0]) == records[0]
    replay = make_proposer(f"replay:{path}")
    assert isinstance(replay, ReplayProposer) and replay.path == str(path)
    assert make_proposer("replay", path=path).records == records
    with pytest.raises(ValueError, match="needs a file"):
        make_proposer("replay")
    with pytest.raises(ValueError, match="needs a file"):
        make_proposer("replay:")
    with pytest.raises(ValueError, match="unknown proposer 'gpt'"):
        make_proposer("gpt")

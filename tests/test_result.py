"""EvalResult and Status: fault attribution, notes kept apart from error messages, old rows load."""
from __future__ import annotations

import dataclasses

import pytest

from nimm_jupyter.execution.base import TrainConfig as ReExported
from nimm_jupyter.modeling.config import TrainConfig
from nimm_jupyter.modeling.result import EvalResult, Status


def test_candidate_faults_are_told_from_infrastructure():
    faults = {s for s in Status if s.is_candidate_fault()}
    assert faults == {Status.SYNTAX_ERROR, Status.CONTRACT_ERROR, Status.RUNTIME_ERROR,
                      Status.DIVERGED, Status.TIMEOUT, Status.OUT_OF_MEMORY}
    assert not Status.OK.is_candidate_fault()
    assert not Status.CRASHED.is_candidate_fault() and not Status.CANCELLED.is_candidate_fault()


def test_notes_round_trip_and_old_rows_move_message_to_notes():
    r = EvalResult(status=Status.OK, notes=["restarts: 2 copies"])
    back = EvalResult.from_dict(r.to_dict())
    assert back.notes == ["restarts: 2 copies"] and back.message == ""
    assert back.for_proposer()["notes"] == ["restarts: 2 copies"]
    old = r.to_dict()
    del old["notes"]
    old["message"] = "stopped at the time limit (1 s) after 3 epochs"
    loaded = EvalResult.from_dict(old)
    assert loaded.message == "" and loaded.notes == [old["message"]]
    failed = EvalResult.failure(Status.RUNTIME_ERROR, "boom").to_dict()
    del failed["notes"]
    assert EvalResult.from_dict(failed).message == "boom"


def test_train_config_is_frozen_and_has_one_home():
    assert ReExported is TrainConfig
    cfg = TrainConfig(seed=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 4  # type: ignore[misc]
    assert TrainConfig.from_dict({**cfg.to_dict(), "unknown_key": 1}) == cfg

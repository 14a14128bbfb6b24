"""What a job reports about its fit (notes, why training stopped, gradient norm, flags) survives
the one-result protocol into the driver's EvalResult, checked and capped like the rest."""
from __future__ import annotations

import math

import pytest

from nimm_jupyter.execution import TrainConfig, evaluate_isolated
from nimm_jupyter.execution.protocol import LIMITS, ProtocolViolation, clean_result
from nimm_jupyter.modeling.result import EvalResult, SplitScores, Status, StopReason
from test_executor import PRIOR, tiny_task


def _ok(**kw) -> dict:
    r = EvalResult(status=Status.OK, train=SplitScores(1.0, 1.0), val=SplitScores(1.0, 1.0),
                   test=SplitScores(1.0, 1.0), **kw)
    return r.to_dict()


def test_fit_report_round_trips_through_the_protocol():
    d = _ok(notes=["polished: 12 L-BFGS iterations"], stop_reason=StopReason.PATIENCE,
            grad_norm=0.003, still_improving=True, untrained=True)
    r = clean_result(d)
    assert r.notes == ["polished: 12 L-BFGS iterations"]
    assert r.stop_reason is StopReason.PATIENCE
    assert r.grad_norm == 0.003 and r.still_improving and r.untrained


def test_fit_report_is_capped_and_type_checked():
    r = clean_result(_ok(notes=["x\x1b[31m" * 1000] * 100))
    assert len(r.notes) == LIMITS.max_notes
    assert all(len(n) <= LIMITS.max_note_chars and "\x1b" not in n for n in r.notes)
    with pytest.raises(ProtocolViolation):
        clean_result({**_ok(), "stop_reason": "because I say so"})
    with pytest.raises(ProtocolViolation):
        clean_result({**_ok(), "untrained": "no"})


def test_a_real_job_reports_why_training_stopped():
    r = evaluate_isolated(tiny_task(), PRIOR, TrainConfig(max_epochs=30, seed=0))
    assert r.status is Status.OK, r.message
    assert isinstance(r.stop_reason, StopReason)
    assert math.isfinite(r.grad_norm)

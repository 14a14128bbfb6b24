"""Modelling layer: the candidate contract check, the training/evaluation harness and the
reference models. Everything here runs in-process; isolation is the execution layer's job."""
from __future__ import annotations

from .contract import (
    ALLOWED_MODULES, CandidateError, ContractReport, check_candidate, load_candidate,
)
from .harness import evaluate, load_trained, mechanistic_parameters, predict, score_predictions
from .references import REFERENCES, reference_code
from .result import EvalResult, SplitScores, Status

__all__ = [
    "ALLOWED_MODULES", "CandidateError", "ContractReport", "check_candidate", "load_candidate",
    "evaluate", "load_trained", "mechanistic_parameters", "predict", "score_predictions",
    "REFERENCES", "reference_code", "EvalResult", "SplitScores", "Status",
]

"""The texts a proposer and the harness receive (task descriptions, prior and hybrid code) are
pinned: moving model code into resource files or modules must not change one byte.

The fingerprints in fixtures/task_texts_sha256.json were first computed before the
metapopulation/HEA split (main at e1edd77) and regenerated once, for the intended rewrite of the
task texts that stopped giving answers away (issue 16); regenerate them only for an intended change.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from nimm_jupyter import tasks
from nimm_jupyter.tasks import metapop
from nimm_jupyter.tasks.metapop import covid, mrsa

PINNED = json.loads((Path(__file__).parent / "fixtures" / "task_texts_sha256.json").read_text())
FIELDS = ("description", "provenance", "prior_code", "prior_omits", "hybrid_code")


def sha(text: str | None) -> str | None:
    return None if text is None else hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize("name", sorted({k.split(".")[0] for k in PINNED} - {"metapop"}))
def test_built_task_texts_are_unchanged(name):
    task = tasks.get(name)
    assert {f: sha(getattr(task, f)) for f in FIELDS} == \
        {f: PINNED[f"{name}.{f}"] for f in FIELDS}


def test_model_code_constants_are_unchanged():
    pinned = {k.split(".")[1]: v for k, v in PINNED.items() if k.startswith("metapop.")}
    now = {attr: sha(getattr(covid if attr.startswith("COVID") else mrsa, attr))
           for attr in pinned}
    assert now == pinned


def test_model_resources_compile_and_define_a_model():
    for code in (covid.COVID_PRIOR_CODE, covid.COVID_HYBRID_CODE, mrsa.MRSA_PRIOR_CODE,
                 mrsa.MRSA_HYBRID_CODE):
        ns: dict = {}
        exec(compile(code, "<candidate>", "exec"), ns)
        assert isinstance(ns["Model"], type)

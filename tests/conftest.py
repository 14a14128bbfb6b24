"""Test defaults: one torch thread, data from ../shared/data, no network, no real API key."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("NIMM_DATA_DIR", str(ROOT.parent / "shared" / "data"))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _no_real_key(monkeypatch):
    # A real key must never be needed or leaked by a test.
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    yield


@pytest.fixture
def data_dir() -> Path:
    return Path(os.environ["NIMM_DATA_DIR"])


@pytest.fixture(scope="module")
def traj():
    """A small 2-state trajectory toy task (tests/toy_tasks.py)."""
    from toy_tasks import make_toy_trajectory

    return make_toy_trajectory()


@pytest.fixture(scope="module")
def tab():
    """A small tabular toy task (tests/toy_tasks.py)."""
    from toy_tasks import make_toy_tabular

    return make_toy_tabular()

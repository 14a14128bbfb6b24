"""SearchConfig (one home per setting) and the journal's settings format."""
from __future__ import annotations

import dataclasses
import json

import pytest

from fakes import FakeExecutor, FakeProposer
from nimm_jupyter.execution.base import EVAL_TIMEOUT_S, EvalRequest, TrainConfig
from nimm_jupyter.search.api import SearchError, open_run, resume, search
from nimm_jupyter.search.config import (
    RESUMABLE, ConfigError, ExecutorConfig, Limits, RayConfig, SearchConfig, Settings,
)
from nimm_jupyter.search.journal import Journal
from nimm_jupyter.search.policies import make_policy
from toy_tasks import make_toy_tabular

pytestmark = pytest.mark.timeout(90)
TASK = make_toy_tabular(n_train=16, n_val=8, n_test=8)

# The settings of a run as main (before SearchConfig) wrote them into the journal.
LEGACY_SETTINGS = {
    "task_name": "toy_tabular", "task_options": {}, "task_source": "pickle", "budget": 2,
    "branches": 2, "policy": "nimmgen", "policy_options": {}, "proposer": "fake",
    "proposer_options": {}, "model": None, "workers": 1, "device": "auto",
    "executor": "FakeExecutor", "executor_options": {"memory_mb": 2048}, "seed": 0,
    "description": "", "time_limit": 100.0, "max_tokens": None, "max_cost": None,
    "train": {"seed": 0, "device": "cpu", "max_epochs": 300, "patience": 40, "lr": 0.01,
              "batch_size": None, "restarts": 1, "time_limit": None, "save_weights": None,
              "threads": 1},
    "eval_timeout": 600.0, "debug_depth": 2, "patience": 3, "near_duplicate": 0.95,
}


# -- SearchConfig ------------------------------------------------------------------------
def test_defaults_are_shared_by_every_layer():
    c = SearchConfig()
    assert c.eval_timeout == EVAL_TIMEOUT_S == EvalRequest("j", "", TASK).timeout
    policy = make_policy("nimmgen")
    assert (policy.branches, policy.debug_depth, policy.patience) == (
        c.branches, c.debug_depth, c.patience)
    assert c.train_config() == TrainConfig(seed=c.seed)
    assert dataclasses.replace(c, seed=7).train_config().seed == 7  # train follows the seed


def test_config_is_frozen_and_overrides_are_checked_in_one_place():
    c = SearchConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.budget = 3  # type: ignore[misc]
    with pytest.raises(ConfigError, match="unknown search setting 'budgte'.*'budget'"):
        c.with_overrides(budgte=3)
    with pytest.raises(ConfigError, match="branches must be >= 1"):
        c.with_overrides(branches=0)
    with pytest.raises(ConfigError, match="max_cost must be > 0"):
        c.with_overrides(max_cost=0)
    with pytest.raises(ConfigError, match="train must be a TrainConfig"):
        c.with_overrides(train={"max_epochs": 3})
    with pytest.raises(ConfigError, match="cannot change \\['policy'\\]"):
        c.with_overrides(only=RESUMABLE, policy="greedy")
    d = c.with_overrides(budget=5, time_limit=60, executor="ray",
                         executor_options={"ray_address": "h:1", "num_gpus": 0.5, "memory_mb": 9})
    assert d.budget == 5 and d.limits == Limits(time_limit=60)
    assert d.executor == ExecutorConfig("ray", RayConfig(address="h:1", gpus_per_eval=0.5),
                                        {"memory_mb": 9})
    assert d.executor.options() == {"ray_address": "h:1", "num_gpus": 0.5, "memory_mb": 9}
    assert c.budget == 20  # the original is unchanged


def test_search_rejects_an_unknown_setting_by_name(tmp_path):
    with pytest.raises(SearchError, match="unknown search setting 'budgte'"):
        search(TASK, budgte=3, proposer=FakeProposer(), executor=FakeExecutor(),
               run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before anything was created


def test_search_takes_a_config_object(tmp_path):
    ex = FakeExecutor()
    cfg = SearchConfig(budget=3, branches=2, train=TrainConfig(max_epochs=4))
    s = search(TASK, cfg, budget=2, proposer=FakeProposer(executor=ex), executor=ex,
               run_dir=tmp_path / "run")
    r = s.wait()
    assert len(r.nodes) == 2 and r.settings["branches"] == 2
    assert r.settings["train"]["max_epochs"] == 4 and r.settings["executor"] == "FakeExecutor"


def test_legacy_settings_round_trip_unchanged():
    settings = Settings.from_dict(LEGACY_SETTINGS)
    assert settings.config.limits.time_limit == 100.0
    assert settings.config.executor.extra == {"memory_mb": 2048}
    assert json.loads(json.dumps(settings.to_dict())) == LEGACY_SETTINGS
    assert set(SearchConfig().to_dict()) | {"task_name", "task_options", "task_source",
                                            "description"} == set(LEGACY_SETTINGS)


def test_a_run_dir_written_in_the_legacy_format_resumes(tmp_path):
    ex = FakeExecutor()
    search(TASK, budget=2, branches=2, proposer=FakeProposer(executor=ex), executor=ex,
           run_dir=tmp_path / "run")
    journal = Journal.for_run(tmp_path / "run")
    journal.update_search(settings=LEGACY_SETTINGS)  # what main's code stored
    journal.close()
    assert open_run(tmp_path / "run").settings == LEGACY_SETTINGS
    ex2 = FakeExecutor()
    s = resume(tmp_path / "run", budget=4, proposer=FakeProposer(executor=ex2), executor=ex2)
    r = s.wait()
    assert len(r.nodes) == 4 and len(ex2.started) == 2
    assert r.settings["budget"] == 4 and r.settings["time_limit"] == 100.0
    assert r.settings["executor_options"] == {"memory_mb": 2048}

"""SearchConfig (one home per setting), the journal's settings format, and the one option
table that the CLI, the magic and ``nimm bench`` build their flags from."""
from __future__ import annotations

import argparse
import dataclasses
import json

import pytest

from fakes import FakeExecutor, FakeProposer
from nimm_jupyter.execution.base import EVAL_TIMEOUT_S, EvalRequest, TrainConfig
from nimm_jupyter.execution.factory import EXECUTOR_NAMES
from nimm_jupyter.search.api import SearchError, open_run, resume, search
from nimm_jupyter.search.config import (
    RESUMABLE, ConfigError, ExecutorConfig, Limits, RayConfig, SearchConfig, Settings,
)
from nimm_jupyter.search.journal import Journal
from nimm_jupyter.search.options import (
    RESUME_OPTIONS, SEARCH_OPTIONS, OptionError, option, search_overrides,
)
from nimm_jupyter.search.policies import POLICIES, make_policy
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
    stored = json.loads(json.dumps(settings.to_dict()))
    # Training settings added since (dtype, val_every, polish_iters, ...) appear with their
    # defaults; every setting the legacy journal had reads back with its value.
    train = stored.pop("train")
    assert {k: v for k, v in LEGACY_SETTINGS.items() if k != "train"} == stored
    assert LEGACY_SETTINGS["train"].items() <= train.items()
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


# -- the option table ----------------------------------------------------------------------
# the CLI's data source, seed code (a notebook cell gives it as a fenced block) and output
CLI_ONLY = {"--csv", "--name", "--describe", "--seed-code", "--json"}


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings if s.startswith("--")} - {"--help"}


def _helps(parser: argparse.ArgumentParser) -> dict[str, str | None]:
    return {s: a.help for a in parser._actions for s in a.option_strings}


def _cli_parser(command: str) -> argparse.ArgumentParser:
    from nimm_jupyter.cli import build_parser

    parser, _ = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


def _magic_parser() -> argparse.ArgumentParser:
    from nimm_jupyter.jupyter.magics import NimmMagics

    return NimmMagics.nimm_search.parser


def test_cli_and_magic_have_the_same_flags_and_help():
    from nimm_jupyter.jupyter.options import MAGIC_ONLY_FLAGS

    cli, magic = _cli_parser("search"), _magic_parser()
    assert _flags(cli) - CLI_ONLY == _flags(magic) - set(MAGIC_ONLY_FLAGS)
    assert {"--retries", "--time-limit", "--n-patients"} <= _flags(cli) & _flags(magic)
    cli_help, magic_help = _helps(cli), _helps(magic)
    for flag in _flags(cli) & _flags(magic):
        assert cli_help[flag] == magic_help[flag], flag
    assert _flags(_cli_parser("resume")) == {o.flag for o in RESUME_OPTIONS} | {"--json"}


def test_help_shows_the_config_defaults_and_the_registries():
    cli = _helps(_cli_parser("search"))
    c = SearchConfig()
    assert f"(default {c.branches})" in cli["--branches"]
    assert f"(default {c.eval_timeout:g})" in cli["--eval-timeout"]
    assert f"(default {TrainConfig().max_epochs})" in cli["--max-epochs"]
    assert all(name in cli["--policy"] for name in POLICIES)
    executor = next(a for a in _cli_parser("search")._actions if "--executor" in a.option_strings)
    assert tuple(executor.choices) == EXECUTOR_NAMES


def test_bench_shares_the_search_flags_it_has():
    from nimm_jupyter.commands.bench import SHARED_FLAGS

    bench, cli = _helps(_cli_parser("bench")), _helps(_cli_parser("search"))
    for flag in SHARED_FLAGS:
        assert bench[flag] == cli[flag] == option(flag).argparse_kwargs()["help"]


def _args(**given):
    ns = argparse.Namespace(**{o.dest: ([] if o.repeatable else None) for o in SEARCH_OPTIONS})
    for k, v in given.items():
        setattr(ns, k, v)
    return ns


def test_flags_map_onto_search_settings(tmp_path):
    out = search_overrides(_args(budget=4, executor="ray", gpus_per_eval=0.5, retries=2,
                                 max_epochs=7, seed=3, time_limit=9.0))
    assert out == {"budget": 4, "executor": "ray", "seed": 3, "time_limit": 9.0,
                   "executor_options": {"num_gpus": 0.5, "retries": 2},
                   "train": TrainConfig(seed=3, max_epochs=7)}
    SearchConfig().with_overrides(**out)  # every key is a setting the config takes
    replay = search_overrides(_args(replay=str(tmp_path / "r.jsonl")))
    assert replay == {"proposer": f"replay:{tmp_path / 'r.jsonl'}"}
    for bad, message in ((dict(budget=0), "--budget must be a positive integer"),
                         (dict(ray_address="h:1"), "need --executor ray"),
                         (dict(proposer="replay"), "needs --replay FILE"),
                         (dict(proposer="offline", replay="x"), "goes with --proposer replay")):
        with pytest.raises(OptionError, match=message):
            search_overrides(_args(**bad))
    # policy options: KEY=VALUE pairs, literals parsed; a malformed pair names the flag
    assert search_overrides(_args(policy_option=["distill_at=0", "exploration=0.5"])) == {
        "policy_options": {"distill_at": 0, "exploration": 0.5}}
    assert SearchConfig().with_overrides(policy_options={"distill_at": 0}).policy_options == {
        "distill_at": 0}
    with pytest.raises(OptionError, match="--policy-option needs KEY=VALUE, got 'distill_at'"):
        search_overrides(_args(policy_option=["distill_at"]))
    # defaults (the magic's %config values) stand in for flags not given, checked alike
    assert search_overrides(_args(budget=5), defaults={"budget": 9, "branches": 2}) == {
        "budget": 5, "branches": 2}
    with pytest.raises(OptionError, match="--workers must be a positive integer"):
        search_overrides(_args(), defaults={"workers": 0})

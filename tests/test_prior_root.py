"""The user's own prior is node 0 of a search on their data, scored as given."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nimm_jupyter.commands.search import summary_text
from nimm_jupyter.modeling.config import TrainConfig
from nimm_jupyter.search.api import search
from nimm_jupyter.search.prior_root import PRIOR_NOTE, prior_node, user_prior
from nimm_jupyter.tasks import task_from_dataframe
from toy_tasks import TAB_PRIOR, make_toy_tabular

pytestmark = pytest.mark.timeout(300)


def _frame(seed=0, n=60):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, size=(n, 2))
    y = 1.5 * x[:, 0] ** 2 - 0.7 * x[:, 1] + rng.normal(0, 0.05, n)
    return pd.DataFrame({"x1": x[:, 0], "x2": x[:, 1], "y": y})


def test_only_a_users_own_prior_roots_the_tree():
    assert user_prior(task_from_dataframe(_frame(), targets="y", prior_code=TAB_PRIOR)) == TAB_PRIOR
    assert user_prior(task_from_dataframe(_frame(), targets="y")) is None  # generic baseline
    assert user_prior(make_toy_tabular(n_train=8, n_val=4, n_test=4)) is None  # not user data


def test_the_prior_is_scored_first_the_prior_and_the_table_compares_with_it(tmp_path):
    task = task_from_dataframe(_frame(), targets="y", prior_code=TAB_PRIOR)
    s = search(task, proposer="offline", budget=2, branches=1, workers=1,
               run_dir=tmp_path / "run", train=TrainConfig(max_epochs=5, polish_iters=10))
    result = s.wait()
    root = result.nodes[0]
    assert root.code == TAB_PRIOR and root.ok, root.message
    assert prior_node(result.nodes) is root
    assert result.branches[0]["note"] == PRIOR_NOTE
    assert len(result.nodes) == 2 and result.nodes[1].code != TAB_PRIOR
    lines = summary_text(result).splitlines()
    header = next(i for i, line in enumerate(lines) if "vs prior" in line)
    assert " 1x " in lines[header + 1]  # the prior compared with itself
    text = "\n".join(lines)
    assert "the prior's val RMSE" in text


def test_offline_proposer_says_once_that_a_text_prior_is_not_read():
    from nimm_jupyter.proposers.context import context_for
    from nimm_jupyter.proposers.offline import OfflineProposer

    words = task_from_dataframe(_frame(), targets="y", prior_text="y grows with x1 squared")
    note = OfflineProposer().notice(context_for(words))
    assert note and "text only" in note and "--proposer anthropic" in note
    assert "linear regression" in note
    seeded = context_for(words, seed_code=TAB_PRIOR)
    assert OfflineProposer().notice(seeded) is None
    coded = task_from_dataframe(_frame(), targets="y", prior_code=TAB_PRIOR,
                                prior_text="y grows with x1 squared")
    assert OfflineProposer().notice(context_for(coded)) is None
    assert OfflineProposer().notice(context_for(task_from_dataframe(_frame(), targets="y"))) is None

"""The end-of-search summary runs no candidate code in the kernel (issue 15 item 3): its fit
plot is drawn from the test predictions the driver scored and kept next to the weights."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from nimm_jupyter.modeling.config import TrainConfig
from nimm_jupyter.modeling.scoring import predictions_file, prediction_shape
from nimm_jupyter.search.rundir import RunDir

pytestmark = pytest.mark.timeout(300)


def test_summary_plot_executes_no_candidate_code(tmp_path):
    import nimm_jupyter
    from nimm_jupyter.jupyter.summary import summary_html
    from nimm_jupyter.search.api import open_run

    run_dir = tmp_path / "run"
    s = nimm_jupyter.search("lung_cancer_chemo", budget=1, branches=1, proposer="offline",
                            device="cpu", task_options={"n_patients": 8, "horizon": 15, "seed": 3},
                            run_dir=run_dir, train=TrainConfig(max_epochs=5, patience=5),
                            background=True)
    s.wait(240)
    result = open_run(run_dir)
    best = result.best
    assert best is not None and best.result.ok, best
    saved = predictions_file(RunDir(run_dir).node_weights(best))
    with np.load(saved) as arrays:  # written by the driver from what it scored
        assert arrays["test"].shape == prediction_shape(result.task, "test")
        # (and the one-step predictions on train, which a proposer may screen residuals on)
        assert {"val", "test"} <= set(arrays.files) <= {"val", "test", "train_one_step"}
    # Module-level code that leaves a marker wherever it is executed: the summary must not.
    marker = tmp_path / "executed"
    hostile = f"open({str(marker)!r}, 'w').write('ran in the kernel')\n" + best.code
    node = dataclasses.replace(best, code=hostile)
    tampered = dataclasses.replace(result, best=node,
                                   nodes=[node if n.id == node.id else n for n in result.nodes])
    html = summary_html(tampered)
    assert "data:image/png;base64," in html and "fit plot unavailable" not in html
    assert not marker.exists()
    saved.unlink()  # no predictions: the plot says so, and still nothing runs
    html = summary_html(tampered)
    assert "<table>" in html and "fit plot unavailable" in html and not marker.exists()

"""The distilled laws of ``bench_distill.py`` on the held-out dosing scenarios (issue 20's third
target; not a test): for each run directory, the RMSE of every distilled node on every
intervention scenario of its task beside its neural parent's and the ``neural`` reference's
(trained here in a jailed job on the same task and seed). Scenario scores are the driver's,
never used for selection.

    python benchmarks/bench_distill.py --seed S --run-dir DIR_S      # for S in 0 1
    python benchmarks/bench_distill_scenarios.py DIR_0 DIR_1
"""
import sys, torch
torch.set_num_threads(1)
from nimm_jupyter import tasks
from nimm_jupyter.execution.base import EvalRequest
from nimm_jupyter.execution.oneshot import run_one
from nimm_jupyter.modeling import reference_code
from nimm_jupyter.modeling.config import TrainConfig
from nimm_jupyter.search.api import open_run
for s, run_dir in enumerate(sys.argv[1:]):
    r = open_run(run_dir)
    task = r.task
    ref = run_one(EvalRequest(job_id=f"ref{s}", source=reference_code(task, "neural"), task=task,
                              config=TrainConfig(seed=int(r.settings.get("seed", s)))))
    neural = {k: v.rmse for k, v in ref.scenarios.items()}
    print(f"{run_dir}: neural reference", {k: round(v, 3) for k, v in neural.items()})
    for n in r.nodes:
        if n.operator == "distill" and n.ok:
            sc = {k: v.rmse for k, v in n.result.scenarios.items()}
            parent = r.node((n.proposer_meta or {}).get("distilled_from"))
            ps = {k: v.rmse for k, v in parent.result.scenarios.items()}
            ahead = all(sc[k] < neural[k] for k in sc)
            print(f"  distilled node {n.id} (from {parent.id}): ahead of neural on every scenario: {ahead}")
            for k in sc:
                print(f"    {k}: law {sc[k]:.4g}  neural parent {ps[k]:.4g}  neural ref {neural[k]:.4g}  ratio ref/law {neural[k]/sc[k]:.3g}")
    b = r.best
    print(f"  answer node {b.id} ({b.operator})", {k: round(v.rmse, 4) for k, v in b.result.scenarios.items()})

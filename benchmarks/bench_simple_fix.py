"""Issue 17, target 1: the prior-seeded offline search against the simple fix a user would fit.

Each system's prior omits one mechanism, and the fix a user writes first from the textbook
is *not* the true law, so the search can beat it (``linear_friction`` is the control where
it is):

* ``drag_oscillator``: x' = v, v' = -k x - c2 v|v| - mu tanh(v/0.2) (quadratic air drag plus
  a little Coulomb friction); the prior is frictionless. The user's fixes: linear viscous
  damping -c v (the first one), then quadratic drag -c v|v| (the second textbook law).
* ``holling_prey`` (bench_priors'): logistic Lotka-Volterra whose predation a x y lacks the
  Holling type-II saturation 1/(1 + h x). A practitioner's first fix *is* usually Holling
  type II itself; that would be the truth, so the fixes measured are the two others in
  the textbooks: a quadratic predation correction a x y (1 - q x) (saturation to first
  order) and predator self-limitation -e y^2 in y'.
* ``linear_friction`` (bench_priors' ``oscillator``): v' = -k x - c v, prior frictionless;
  the user's fix -c v is the true law, so a tie is the honest outcome.

Per system and seed (the seed sets the data noise, the initial states and the search):
the fitted prior (node 0 of the search), every fix fitted by the same harness
(``evaluate``, default training), the "best simple fix" (the fix with the lowest
*validation* RMSE), the prior-seeded offline search (nimmgen, offline proposer, the node
``SearchResult.best`` hands back) and the true structure. Test RMSE (original units, whole
trajectories held out) and the relative error of the prior's own constants. The prior and
every fix declare only the constants they use, each started 30 % off the truth (a fix's new
constant at a guess), as a user would write them.

    PYTHONPATH=. NIMM_DATA_DIR=... python benchmarks/bench_simple_fix.py --seeds 0,1,2 \\
        [--budget 12] [--systems drag_oscillator,holling_prey] [--out rows.json]
    python benchmarks/bench_simple_fix.py --summary rows.json [more.json ...]
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
from bench_priors import SYSTEMS as PRIOR_SYSTEMS
from bench_priors import const_err, make_task, model_source, offline_search, simulate
from scipy import stats

from nimm_jupyter.modeling.harness import evaluate

COULOMB_EPS = 0.2  # velocity scale of the smoothed Coulomb friction (a fixed law, not fitted)

_DRAG = dict(
    truth=dict(k=2.0, c2=0.4, mu=0.15), x0=((-1.5, 1.5), (-1.0, 1.0)), dt=0.2, T=30,
    rhs=lambda x, w, p: (w, -p["k"] * x - p["c2"] * w * np.abs(w)
                         - p["mu"] * np.tanh(w / COULOMB_EPS)),
    prior=["dx = w", "dw = -self.k() * x"],
    true=["dx = w", "dw = -self.k() * x - self.c2() * w * torch.abs(w) "
          f"- self.mu() * torch.tanh(w / {COULOMB_EPS})"],
    missing="-c2*v|v| - mu*tanh(v/0.2) in dv/dt")

# system -> (its definition, the prior's own constants, {fix name: (new constants, rhs)})
SYSTEMS = {
    "drag_oscillator": (_DRAG, ("k",), {
        "viscous -c*v": ({"c": 0.1}, ["dx = w", "dw = -self.k() * x - self.c() * w"]),
        "quadratic drag -c*v|v|": (
            {"c": 0.1}, ["dx = w", "dw = -self.k() * x - self.c() * w * torch.abs(w)"]),
    }),
    "holling_prey": (PRIOR_SYSTEMS["holling_prey"], ("r", "K", "a", "b", "d"), {
        "predation a*x*y*(1-q*x)": (
            {"q": 0.05}, ["dx = self.r() * x * (1 - x / self.K()) "
                          "- self.a() * x * w * (1 - self.q() * x)",
                          "dw = self.b() * x * w - self.d() * w"]),
        "predator self-limitation -e*y^2": (
            {"e": 0.05}, ["dx = self.r() * x * (1 - x / self.K()) - self.a() * x * w",
                          "dw = self.b() * x * w - self.d() * w - self.e() * w * w"]),
    }),
    "linear_friction": (PRIOR_SYSTEMS["oscillator"], ("k",), {
        "viscous -c*v": ({"c": 0.1}, ["dx = w", "dw = -self.k() * x - self.c() * w"]),
    }),
}

OFF = 1.3  # every constant of the prior starts 30 % off the truth, as in bench_priors


def _source(truth: dict, own: tuple[str, ...], body: list[str], new: dict | None = None,
            ) -> str:
    start = {k: truth[k] * OFF for k in own} | dict(new or {})
    return model_source(start, body, off=1.0)


def _fit(df, name: str, source: str, truth: dict, own: tuple[str, ...]) -> dict:
    t0 = time.time()
    r = evaluate(make_task(df, name, source), source)
    if not r.ok:
        return {"status": str(r.status), "message": r.message[:200]}
    return {"val": r.val.rmse, "test": r.test.rmse, "seconds": round(time.time() - t0, 1),
            "const_err_%": const_err(r.parameters, {k: truth[k] for k in own}),
            "params": {k: round(float(v), 4) for k, v in r.parameters.items()}}


def run(name: str, budget: int, seed: int) -> dict:
    """One system, one seed: every fitted model's validation/test RMSE and constants."""
    s, own, fixes = SYSTEMS[name]
    truth = s["truth"]
    own_truth = {k: truth[k] for k in own}
    df = simulate(s, seed=seed)
    prior = _source(truth, own, s["prior"])
    found = offline_search(make_task(df, name, prior), budget, seed)
    fits = {fix: _fit(df, name, _source(truth, own, body, new), truth, own)
            for fix, (new, body) in fixes.items()}
    ok = {f: v for f, v in fits.items() if "val" in v}
    best_fix = min(ok, key=lambda f: ok[f]["val"]) if ok else None
    true_src = model_source(truth, s["true"])
    return {
        "system": name, "seed": seed, "budget": budget, "missing": s["missing"],
        "prior": found.get("prior", {}) | {"const_err_%": const_err(
            found.get("prior", {}).get("params", {}), own_truth)},
        "fixes": fits, "best_fix": best_fix,
        "search": {"val": found["val_rmse"], "test": found["test_rmse"],
                   "change": found["best_change"], "seconds": found["seconds"],
                   "const_err_%": const_err(found["params"], own_truth),
                   "params": {k: round(float(v), 4) for k, v in found["params"].items()
                              if "net" not in k},
                   "nodes": found["nodes"]},
        "true": _fit(df, name, true_src, truth, tuple(truth)),
    }


def _mean_se(xs: list[float]) -> str:
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    if not xs:
        return "–"
    se = np.std(xs, ddof=1) / math.sqrt(len(xs)) if len(xs) > 1 else float("nan")
    return f"{np.mean(xs):.4g} ± {se:.2g}" if len(xs) > 1 else f"{xs[0]:.4g}"


def summary(rows: list[dict]) -> str:
    """A markdown table per system (mean ± SE over seeds) and the paired comparison of the
    search with the best simple fix: a paired t-test on log test RMSE across seeds."""
    out = []
    for name in dict.fromkeys(r["system"] for r in rows):
        rs = sorted((r for r in rows if r["system"] == name), key=lambda r: r["seed"])
        fixes = list(rs[0]["fixes"])
        head = ["fitted prior", *fixes, "best simple fix (by val)", "search", "true structure"]
        cols = [[r["prior"].get("test_rmse") for r in rs],
                *[[r["fixes"][f].get("test") for r in rs] for f in fixes],
                [r["fixes"][r["best_fix"]]["test"] if r["best_fix"] else None for r in rs],
                [r["search"]["test"] for r in rs], [r["true"].get("test") for r in rs]]
        out += [f"### {name} ({rs[0]['missing']}), seeds {[r['seed'] for r in rs]}", "",
                "| " + " | ".join(h.replace("|", "\\|") for h in head) + " |",
                "|" + "---|" * len(head),
                "| " + " | ".join(_mean_se(c) for c in cols) + " |", ""]
        pairs = [(r["search"]["test"], r["fixes"][r["best_fix"]]["test"]) for r in rs
                 if r["best_fix"] and r["search"]["test"] is not None]
        ratios = [a / b for a, b in pairs]
        line = "search / best fix per seed: " + ", ".join(f"{q:.3g}" for q in ratios)
        if len(pairs) > 1:
            t = stats.ttest_rel(np.log([a for a, _ in pairs]), np.log([b for _, b in pairs]))
            line += (f"; geometric mean {math.exp(np.mean(np.log(ratios))):.3g}, "
                     f"paired t on log RMSE t = {t.statistic:.2f}, p = {t.pvalue:.3g}")
        out += [line, ""]
        for r in rs:
            bf = r["fixes"][r["best_fix"]] if r["best_fix"] else {}
            out.append(f"* seed {r['seed']}: search picked `{r['search']['change'][:90]}` "
                       f"(val {r['search']['val']:.4g}, {r['search']['seconds']} s); constants "
                       f"% err search {r['search']['const_err_%']}, best fix "
                       f"`{r['best_fix']}` {bf.get('const_err_%')}, prior "
                       f"{r['prior'].get('const_err_%')}, true {r['true'].get('const_err_%')}")
        out += ["", "constants, mean (max) % error over seeds: " + "; ".join(
            f"{who} {_mean_max([get(r) for r in rs])}" for who, get in (
                ("search", lambda r: r["search"]["const_err_%"]),
                ("best fix", lambda r: r["fixes"][r["best_fix"]].get("const_err_%", {})),
                ("prior", lambda r: r["prior"].get("const_err_%", {})),
                ("true", lambda r: r["true"].get("const_err_%", {})))), ""]
    return "\n".join(out)


def _mean_max(errs: list[dict[str, float]]) -> str:
    keys = dict.fromkeys(k for e in errs for k in e)
    return ", ".join(f"{k} {np.mean([e[k] for e in errs if k in e]):.1f} "
                     f"({max(e[k] for e in errs if k in e):.1f})" for k in keys)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=int, default=12)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--systems", default="drag_oscillator,holling_prey,linear_friction")
    ap.add_argument("--out", default="", help="write the rows (JSON) here as they finish")
    ap.add_argument("--summary", nargs="*", help="print the tables of these row files only")
    a = ap.parse_args()
    if a.summary:
        print(summary([r for f in a.summary for r in json.loads(Path(f).read_text())]))
        return
    rows = []
    for seed in (int(x) for x in a.seeds.split(",")):
        for name in a.systems.split(","):
            rows.append(run(name, a.budget, seed))
            print(json.dumps(rows[-1]), flush=True)
            if a.out:
                Path(a.out).write_text(json.dumps(rows, indent=1))
    print(summary(rows))


if __name__ == "__main__":
    main()

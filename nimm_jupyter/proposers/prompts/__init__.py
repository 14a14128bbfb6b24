"""Prompt templates (``*.md`` next to this file, ``string.Template`` syntax) and their rendering.

The system prompt has two parts: fixed instructions (``system.md``) and the task block
(``task.md``: description, variables, prior code, candidate interface). Both stay identical
for every call of a search, which is what makes them cacheable. The per-call user message
comes from ``strategies.md``, ``draft.md``, ``refine.md``, ``debug.md`` or ``distill.md``.

Test scores never reach a prompt: metrics are filtered again here even though
:class:`~nimm_jupyter.proposers.base.NodeView` should already hold a test-free view.
"""
from __future__ import annotations

import math
from functools import lru_cache
from importlib import resources
from string import Template
from typing import Any

from ..base import NodeView, ProposalContext, Strategy
from ..reference import blocks_reference

TEMPLATE_NAMES = ("system", "task", "strategies", "draft", "refine", "debug", "distill")


@lru_cache(maxsize=None)
def template(name: str) -> Template:
    """The packaged template ``<name>.md``."""
    if name not in TEMPLATE_NAMES:
        raise ValueError(f"unknown prompt template {name!r}; known: {', '.join(TEMPLATE_NAMES)}")
    text = resources.files(__name__).joinpath(f"{name}.md").read_text(encoding="utf-8")
    return Template(text)


def _render(name: str, **values: Any) -> str:
    return template(name).substitute(**{k: str(v) for k, v in values.items()}).strip() + "\n"


def strip_test(metrics: Any) -> Any:
    """A copy of ``metrics`` without any key naming the test split, at any depth."""
    if isinstance(metrics, dict):
        return {
            k: strip_test(v) for k, v in metrics.items()
            if not (isinstance(k, str) and (k.lower() == "test" or k.lower().startswith("test_")))
        }
    if isinstance(metrics, list):
        return [strip_test(v) for v in metrics]
    return metrics


def _num(x: Any) -> str:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return str(x)
    if isinstance(x, float) and not math.isfinite(x):
        return "n/a"
    return f"{x:.4g}"


def _split_line(label: str, split: Any) -> str | None:
    if not isinstance(split, dict):
        return None
    line = f"{label} RMSE: {_num(split.get('rmse', float('nan')))} (normalised {_num(split.get('rmse_norm', float('nan')))})"
    per = split.get("per_target") or {}
    if per:
        line += "; per target: " + ", ".join(f"{k} {_num(v)}" for k, v in per.items())
    horizon = split.get("by_horizon") or {}
    if isinstance(horizon, dict) and len(horizon) > 1:
        line += ("; normalised RMSE by forecast step: "
                 + ", ".join(f"steps {k} {_num(v)}" for k, v in list(horizon.items())[:8]))
    regimes = split.get("by_regime") or {}
    if isinstance(regimes, dict) and regimes:
        line += ("; normalised RMSE by input regime: "
                 + ", ".join(f"{k} {_num(v)}" for k, v in list(regimes.items())[:12]))
    return line


def format_metrics(metrics: dict[str, Any]) -> str:
    """Train/val scores, per-target errors and fitted parameters as short text lines."""
    m = strip_test(metrics or {})
    lines = [f"status: {m.get('status', 'unknown')}"]
    if m.get("message"):
        lines.append(f"message: {m['message']}")
    if m.get("notes"):
        lines.append("notes: " + "; ".join(str(n) for n in m["notes"]))
    for label, key in (("train", "train"), ("val", "val")):
        line = _split_line(label, m.get(key))
        if line:
            lines.append(line)
    params = m.get("parameters") or {}
    if params:
        lines.append("fitted parameters: " + ", ".join(f"{k}={_num(v)}" for k, v in params.items()))
    facts = [f"{label} {_num(m[key])}" for label, key in (
        ("trainable parameters", "n_parameters"), ("epochs", "epochs"), ("wall time s", "wall_time"))
        if key in m]
    if facts:
        lines.append("; ".join(facts))
    curve = m.get("loss_curve") or []
    if curve and isinstance(curve[-1], dict):
        best = min((c.get("val", float("inf")) for c in curve), default=float("inf"))
        lines.append(f"loss curve: {len(curve)} epochs, last train {_num(curve[-1].get('train'))}, "
                     f"last hold-out {_num(curve[-1].get('val'))}, best hold-out {_num(best)} "
                     "(normalised; the hold-out is carved from training for early stopping)")
    return "\n".join("- " + line for line in lines)


def val_score(metrics: dict[str, Any]) -> float | None:
    """Normalised validation RMSE of an ok node, else None."""
    if (metrics or {}).get("status") != "ok":
        return None
    val = (metrics or {}).get("val") or {}
    x = val.get("rmse_norm") if isinstance(val, dict) else None
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None


IN_PROGRESS = ("pending", "running")  # node lifecycle states before a result exists


def _effect(meta: dict[str, Any]) -> str:
    effect, before = meta.get("effect"), meta.get("parent_score")
    if not isinstance(effect, (int, float)) or not isinstance(before, (int, float)):
        return " (its parent has no score to compare with)" if meta.get("parent") is not None else ""
    verdict = "better" if effect < 0 else "worse" if effect > 0 else "no change"
    return f" ({effect:+.3g} vs its parent's {_num(before)}: {verdict})"


def format_history(history: list[NodeView]) -> str:
    """Earlier edits (oldest first): node, parent, the change and its effect vs that parent.

    Nodes still being evaluated are "in progress", never failures; an edit that changed more
    than one thing (``meta["n_changes"]``, from the search's diff check) is labelled.
    """
    if not history:
        return "(none yet: this is the first refinement of the branch)"
    lines = []
    for node in history:
        meta = node.meta or {}
        parent = meta.get("parent")
        origin = f"{node.operator} of node {parent}" if parent is not None else node.operator
        head = f"- node {node.id} ({origin}): {node.change.strip() or '(no description)'}"
        n_changes = meta.get("n_changes")
        if isinstance(n_changes, int) and n_changes > 1:
            head += f" [NOT atomic: changed {n_changes} separate places]"
        score = val_score(node.metrics)
        if meta.get("in_progress") or (score is None and node.status in IN_PROGRESS):
            lines.append(head + " -> in progress (not scored yet)")
        elif score is None:
            msg = str((node.metrics or {}).get("message", ""))[:160]
            lines.append(head + f" -> failed: {node.status}" + (f" ({msg})" if msg else ""))
        else:
            lines.append(head + f" -> val {_num(score)}{_effect(meta)}")
    return "\n".join(lines)


def _listing(title: str, items: list[str], empty: str) -> str:
    return f"## {title}\n" + ("\n".join(f"- {x}" for x in items) if items else empty) + "\n"


def search_state(ctx: ProposalContext) -> str:
    """The search-wide memory and what is still being evaluated (shown to every proposal)."""
    memory = _listing("What the search has learnt so far (edit: effect vs its own parent, all branches)",
                      ctx.memory, "(nothing scored yet)")
    running = _listing("Still being evaluated (do not propose these again)", ctx.in_progress,
                       "(nothing)")
    prior = f"## Where the prior fails most\n{ctx.prior_note}\n" if ctx.prior_note else ""
    return memory + "\n" + running + ("\n" + prior if prior else "")


def noise_note(ctx: ProposalContext, metrics: dict[str, Any]) -> str:
    """How far a validation score can be trusted: its standard error when the result carries
    one, else the validation set size (no uncertainty is made up)."""
    val = (metrics or {}).get("val") or {}
    se = val.get("rmse_norm_se") if isinstance(val, dict) else None
    n_val = (ctx.sizes or {}).get("val")
    unit = "trajectories" if ctx.kind == "trajectory" else "rows"
    size = f"{n_val} validation {unit}" if n_val is not None else "a validation set of unknown size"
    if isinstance(se, (int, float)) and math.isfinite(se):
        return f"Normalised validation RMSE has a standard error of about {_num(se)} ({size})."
    return (f"Scores come from one fit scored on {size}; no standard error is computed, so a "
            "small difference between two scores may be noise.")


def _extras(extras: dict[str, Any]) -> str:
    names = {"constants": "Constants in spec.constants", "context": "Context steps the model sees"}
    lines = [f"- {names.get(k, k)}: {', '.join(map(str, v)) if isinstance(v, (list, tuple)) else v}"
             for k, v in (extras or {}).items() if v not in (None, "", [], {})]
    return "\n".join(lines) or "(none)"


def system_blocks(ctx: ProposalContext) -> list[dict[str, Any]]:
    """The system prompt as Messages API text blocks; the task block is marked cacheable."""
    units = ctx.units or {}

    def named(names: list[str]) -> str:
        return ", ".join(f"{n} [{units[n]}]" if units.get(n) else n for n in names) or "(none)"

    task = _render(
        "task",
        task_name=ctx.task_name, kind=ctx.kind, description=ctx.description.strip(),
        user_notes=ctx.user_notes.strip() or "(nothing beyond the task description)",
        inputs=named(ctx.input_names), targets=named(ctx.target_names),
        sizes=", ".join(f"{k}={v}" for k, v in (ctx.sizes or {}).items()) or "(unknown)",
        family=ctx.family, prior_code=ctx.prior_code.strip(),
        prior_omits=ctx.prior_omits.strip() or "(not stated)", interface=ctx.interface.strip(),
        reference=blocks_reference(), training=ctx.training.strip() or "(not stated)",
        data_view=ctx.data_view.strip() or "(not available)", extras=_extras(ctx.extras),
    )
    return [
        {"type": "text", "text": _render("system")},
        {"type": "text", "text": task, "cache_control": {"type": "ephemeral"}},
    ]


def strategies_prompt(k: int, exclude: list[Strategy]) -> str:
    block = ""
    if exclude:
        block = ("\nThese strategies are already being explored; do NOT propose them or close "
                 "variants of them:\n" + "\n".join(f"- {s.title}: {s.description}" for s in exclude) + "\n")
    return _render("strategies", k=k, exclude_block=block)


def draft_prompt(ctx: ProposalContext, strategy: Strategy | None) -> str:
    if strategy is None:
        sblock = ("Strategy: your choice. Pick the way of joining a neural network to the "
                  "mechanism that you judge most promising for this data, and say which in the CHANGE line.")
    else:
        sblock = f"Strategy for this branch: {strategy.title}\n{strategy.description}"
    seed = ""
    if ctx.seed_code:
        seed = ("\nThe user supplied this model as a starting point; keep its structure and "
                f"apply the strategy to it:\n```python\n{ctx.seed_code.strip()}\n```\n")
    return _render("draft", strategy_block=sblock, seed_block=seed, search_state=search_state(ctx))


def refine_prompt(ctx: ProposalContext, parent: NodeView, history: list[NodeView]) -> str:
    strategy = f"{parent.strategy.title}: {parent.strategy.description}" if parent.strategy else "(independent draft)"
    return _render(
        "refine", strategy=strategy, parent_id=parent.id, parent_operator=parent.operator,
        parent_change=parent.change.strip() or "(no description)", parent_code=parent.code.strip(),
        parent_metrics=format_metrics(parent.metrics), noise=noise_note(ctx, parent.metrics),
        history=format_history(history), search_state=search_state(ctx),
    )


def debug_prompt(ctx: ProposalContext, failed: NodeView) -> str:
    message = str((failed.metrics or {}).get("message", "")).strip() or "(no message)"
    return _render(
        "debug", node_id=failed.id, node_operator=failed.operator,
        node_change=failed.change.strip() or "(no description)", code=failed.code.strip(),
        status=failed.status, message=message[:4000], search_state=search_state(ctx),
    )


def distill_prompt(ctx: ProposalContext, parent: NodeView, table: str, law: str,
                   law_error: str) -> str:
    """The request to turn ``parent``'s networks into a closed form: its code and metrics,
    the sampled input-output ``table`` (text, already capped) and the sparse fit's ``law``."""
    strategy = f"{parent.strategy.title}: {parent.strategy.description}" if parent.strategy else "(independent draft)"
    return _render(
        "distill", strategy=strategy, parent_id=parent.id, parent_operator=parent.operator,
        parent_change=parent.change.strip() or "(no description)", parent_code=parent.code.strip(),
        parent_metrics=format_metrics(strip_test(parent.metrics)), table=table, law=law,
        law_error=law_error, search_state=search_state(ctx),
    )

"""Prompt templates (``*.md`` next to this file, ``string.Template`` syntax) and their rendering.

The system prompt has two parts: fixed instructions (``system.md``) and the task block
(``task.md``: description, variables, prior code, candidate interface). Both stay identical
for every call of a search, which is what makes them cacheable. The per-call user message
comes from ``strategies.md``, ``draft.md``, ``refine.md`` or ``debug.md``.

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

TEMPLATE_NAMES = ("system", "task", "strategies", "draft", "refine", "debug")


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
                     f"last val {_num(curve[-1].get('val'))}, best val {_num(best)}")
    return "\n".join("- " + line for line in lines)


def val_score(metrics: dict[str, Any]) -> float | None:
    """Normalised validation RMSE of an ok node, else None."""
    if (metrics or {}).get("status") != "ok":
        return None
    val = (metrics or {}).get("val") or {}
    x = val.get("rmse_norm") if isinstance(val, dict) else None
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None


def format_history(history: list[NodeView]) -> str:
    """Earlier edits (oldest first) with their val score and the change from the entry before."""
    if not history:
        return "(none yet: this is the first refinement of the branch)"
    lines = []
    previous: float | None = None
    for node in history:
        score = val_score(node.metrics)
        change = node.change.strip() or "(no description)"
        if score is None:
            msg = str((node.metrics or {}).get("message", ""))[:160]
            lines.append(f"- node {node.id} ({node.operator}): {change} -> failed: {node.status}"
                         + (f" ({msg})" if msg else ""))
            continue
        effect = "" if previous is None else f" ({score - previous:+.4g} vs the entry before)"
        lines.append(f"- node {node.id} ({node.operator}): {change} -> val {_num(score)}{effect}")
        previous = score
    return "\n".join(lines)


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
    return _render("draft", strategy_block=sblock, seed_block=seed)


def refine_prompt(parent: NodeView, history: list[NodeView]) -> str:
    strategy = f"{parent.strategy.title}: {parent.strategy.description}" if parent.strategy else "(independent draft)"
    return _render(
        "refine", strategy=strategy, parent_id=parent.id, parent_operator=parent.operator,
        parent_change=parent.change.strip() or "(no description)", parent_code=parent.code.strip(),
        parent_metrics=format_metrics(parent.metrics), history=format_history(history),
    )


def debug_prompt(failed: NodeView) -> str:
    message = str((failed.metrics or {}).get("message", "")).strip() or "(no message)"
    return _render(
        "debug", node_id=failed.id, node_operator=failed.operator,
        node_change=failed.change.strip() or "(no description)", code=failed.code.strip(),
        status=failed.status, message=message[:4000],
    )

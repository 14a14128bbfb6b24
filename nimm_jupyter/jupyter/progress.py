"""Progress counters of a search for the widget: evaluated of budget, running, failed,
elapsed, an estimate of the time left, and tokens/cost (only where an LLM spends them)."""
from __future__ import annotations

import math
import statistics
import time
from typing import Any, Mapping

LLM_PROPOSERS = frozenset({"anthropic", "openai"})  # proposers whose tokens and cost are worth showing


def _settings(search: Any) -> Mapping[str, Any]:
    settings = getattr(search, "settings", None)
    return settings if isinstance(settings, Mapping) else {}


def time_left(wall_times: list[float], remaining: int, workers: int) -> float | None:
    """Seconds left: the median evaluation time times the rounds of ``workers`` evaluations
    still to run (None before the first evaluation, 0 when nothing remains)."""
    if remaining <= 0:
        return 0.0
    if not wall_times:
        return None
    return statistics.median(wall_times) * math.ceil(remaining / max(1, workers))


def counters(search: Any, live: bool, rows: Mapping[int, Mapping[str, Any]],
             started: float) -> dict[str, Any]:
    """The counters the widget shows, from the search's status and the tree rows."""
    status: dict[str, Any] = {}
    tokens, cost, elapsed = 0, 0.0, 0.0
    if live:
        try:
            status = dict(search.status())
        except Exception:  # a search that is shutting down may not answer
            status = {}
    else:  # a snapshot carries its totals
        tokens, cost, elapsed = search.tokens, search.cost, search.wall_time
    settings = _settings(search)
    states = [r["state"] for r in rows.values()]
    evaluated = int(status.get("evaluated", states.count("done") + states.count("failed")))
    budget = status.get("budget", settings.get("budget"))
    budget = int(budget) if isinstance(budget, (int, float)) and budget > 0 else None
    tokens = int(status.get("tokens", tokens or 0) or 0)
    walls = [float(n.result.wall_time) for n in search.nodes
             if n.result is not None and (n.result.wall_time or 0) > 0]
    done = not live or bool(getattr(search, "done", True))
    left = None if done or budget is None else time_left(
        walls, budget - evaluated, int(settings.get("workers", 1) or 1))
    return {
        "evaluated": evaluated,
        "budget": budget,
        "failed": int(status.get("failed", states.count("failed"))),
        "running": int(status.get("running", states.count("running"))),
        "cancelled": states.count("cancelled"),
        "tokens": tokens,
        "cost": float(status.get("cost", cost or 0.0) or 0.0),
        "spend": tokens > 0 or settings.get("proposer") in LLM_PROPOSERS,
        "elapsed": float(status.get("elapsed", elapsed or time.time() - started)),
        "median_eval": statistics.median(walls) if walls else None,
        "eta": left,
    }

"""The run loop: policy -> proposer (worker thread) -> executor -> tree, journal and events.

One driver thread owns the tree and the journal. The proposer runs in a separate daemon
thread so that it writes the next candidate while up to ``workers`` evaluations are in
flight (at most one proposal at a time). A new proposal starts only when no proposed node is
waiting for a free slot, so with one worker every decision is taken at the same point of
the search (all earlier nodes finished, the previous one running) and a deterministic
proposer gives a reproducible search.
"""
from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..modeling.result import Status  # before execution.base: modeling <-> execution cycle
from ..execution.base import EvalRequest, Executor, ExecutorLost, JobEvent
from ..modeling.config import TrainConfig
from ..proposers.base import MechanismFit, Proposal, ProposalContext, Proposer, Strategy
from ..tasks.base import Task
from . import event_data
from .distill_step import distill_proposal
from .events import Event, EventBus
from .config import Settings
from .history import branch_history, findings, history_view, in_progress
from .journal import Journal
from .node import Node, NodeState, unified_diff
from .policies import Action, Policy
from .prior_root import (
    PRIOR_NOTE, PRIOR_STRATEGY, mechanism_fits, prior_proposal, prior_status, prior_weak_spots,
    reference_fit, user_prior,
)
from .rundir import RunDir
from .states import RunState, StopReason
from .tree import BranchState, Tree, diverse_strategies, duplicate_of, similar_strategies

POLL_S = 0.05  # how long one loop iteration waits for executor events
PROGRESS_JOURNAL_S = 1.0  # progress events reach the journal at most this often per node
MAX_CONSECUTIVE_REJECTS = 8  # duplicates in a row before the search gives up
MAX_EMPTY_STRATEGY_CALLS = 2  # strategy calls without a new strategy before "exhausted"


@dataclass
class _Job:
    """One proposer call running in its own thread."""

    action: Action
    thread: threading.Thread | None = None
    done: threading.Event = field(default_factory=threading.Event)
    value: Any = None
    error: BaseException | None = None
    last_call_before: int = 0


class Runner:
    """Runs one search to a stop reason. Create it, then call :meth:`run` (blocking)."""

    def __init__(self, *, run_id: str, run_dir: Path, task: Task, settings: Settings,
                 proposer: Proposer, executor: Executor, policy: Policy, journal: Journal,
                 tree: Tree, bus: EventBus, context: ProposalContext,
                 elapsed_before: float = 0.0, own_executor: bool = True,
                 train: TrainConfig | None = None) -> None:
        self.run_id, self.run_dir, self.task = run_id, Path(run_dir), task
        self.settings, self.proposer, self.executor = settings, proposer, executor
        self.policy, self.journal, self.tree, self.bus = policy, journal, tree, bus
        self.own_executor = own_executor
        self.train = train if train is not None else settings.config.train_config()
        # a proposer is told how its candidates will be trained: this search's settings
        self.context = replace(context, training=self.train.describe())
        self.elapsed_before = float(elapsed_before)
        totals = journal.totals()
        self.tokens = totals["tokens_in"] + totals["tokens_out"]
        self.cost = totals["cost"]
        self.stop_reason: str | None = None  # a StopReason, with a detail for lost/error
        self.status = RunState.CREATED
        self.error: BaseException | None = None
        self.started_at: float | None = None
        self._stop = threading.Event()
        self._job: _Job | None = None
        self._ready: list[int] = []  # proposed nodes waiting for an executor slot
        self._jobs: dict[str, int] = {}  # executor job id -> node id
        self._attempt = 0
        self._cancelled: set[str] = set()
        self._waiting = False  # the policy had nothing to do at the last ask
        self._rejects = 0
        self._empty_strategy_calls = 0
        self._rejected_strategies: list[Strategy] = [
            Strategy(**d) for d in journal.get_meta("rejected_strategies", []) or []]
        self._last_progress_write: dict[int, float] = {}
        self._best_id: int | None = None
        self._fits: dict[int, MechanismFit] = {}  # fitted mechanisms read so far (prior_root)
        self.finished = threading.Event()

    # -- public --------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to stop; in-flight evaluations are cancelled and re-run on resume
        (within its budget)."""
        self._stop.set()

    @property
    def elapsed(self) -> float:
        now = time.time()
        return self.elapsed_before + (now - self.started_at if self.started_at else 0.0)

    def running_count(self) -> int:
        return len(self._jobs)

    def proposing(self) -> bool:
        return self._job is not None

    def run(self) -> StopReason:
        """Run until a stop reason; returns it. Errors are recorded, then re-raised."""
        self.started_at = time.time()
        self.status = RunState.RUNNING
        try:
            self._start()
            reason = None
            while reason is None:
                reason = self._step()
            self._finish(reason, RunState.STOPPED if reason is StopReason.STOPPED
                         else RunState.COMPLETED)
            return reason
        except KeyboardInterrupt:
            self._finish(StopReason.STOPPED, RunState.STOPPED)
            raise
        except ExecutorLost as exc:
            # the journal keeps every finished node; unfinished ones re-run on resume
            self.error = exc
            self._finish(StopReason.EXECUTOR_LOST.with_detail(str(exc)), RunState.STOPPED)
            raise
        except BaseException as exc:
            self.error = exc
            msg = StopReason.ERROR.with_detail(f"{type(exc).__name__}: {exc}")
            try:
                self._emit("log", {"message": "search failed",
                                   "traceback": traceback.format_exc()[-4000:]})
            finally:
                self._finish(msg, RunState.ERROR)
            raise

    # -- loop ----------------------------------------------------------------------------
    def _start(self) -> None:
        self.tree.strategies_exhausted = bool(self.journal.get_meta("strategies_exhausted", False))
        best = self.tree.answer()  # the node a search hands back, as best_changed reports it
        self._best_id = best.id if best else None
        resumed = bool(self.tree.nodes)
        # Nodes that never finished (crash, stop) are evaluated again, oldest first, as far as
        # the budget (of evaluated nodes) allows; the rest stay pending for a larger budget.
        nodes = self.tree.snapshot()
        room = self.settings.config.budget - sum(n.completed for n in nodes)
        for n in sorted((n for n in nodes if not n.state.completed), key=lambda n: n.id):
            n.state, n.started = NodeState.PENDING, None
            self.journal.save_node(n)
            if len(self._ready) < room:
                self._ready.append(n.id)
        self.journal.update_search(status=RunState.RUNNING, settings=self.settings.to_dict())
        self._emit("search_started", {
            "task": self.task.name, "run_dir": str(self.run_dir), "resumed": resumed,
            "budget": self.settings.config.budget, "branches": self.settings.config.branches,
            "policy": self.settings.config.policy, "workers": self.settings.config.workers,
            "nodes": len(self.tree.nodes), "requeued": list(self._ready),
        })
        if not resumed:
            note = self.proposer.notice(self.context)
            if note:
                self._emit("log", {"message": note, "kind": "notice"})
            self._seed_root()

    def _seed_root(self) -> None:
        """Node 0 is the user's own prior, scored as given (see :mod:`.prior_root`)."""
        code = user_prior(self.task)
        if code is None:
            return
        branch = self._new_branch(PRIOR_STRATEGY)
        self._create_node(Action("draft", branch=branch.id), prior_proposal(code),
                          dict(operation="prior", tokens_in=0, tokens_out=0, cost=0.0,
                               model=None))
        self.tree.prune(branch.id, PRIOR_NOTE)
        self._save_branches()

    def _step(self) -> StopReason | None:
        if self._stop.is_set():
            return StopReason.STOPPED
        limit = self._limit_reason()
        if limit is StopReason.TIME_LIMIT:
            return limit
        self._handle_events(self.executor.poll(timeout=POLL_S if self._busy() else 0.0))
        if self._job is not None and self._job.done.is_set():
            job, self._job = self._job, None
            self._handle_proposal(job)
            if self._stop.is_set():
                return StopReason.STOPPED
        self._fill_slots()
        limit = self._limit_reason()  # the proposal just handled may have spent the budget
        if limit is None and self._job is None and not self._ready:
            if self._rejects >= MAX_CONSECUTIVE_REJECTS:
                limit = StopReason.NO_NEW_PROPOSALS
            elif len(self.tree.nodes) < self.settings.config.budget:
                self._maybe_propose()
        if not self._busy() and self._job is None:
            if limit is not None:
                return limit
            if len(self.tree.nodes) >= self.settings.config.budget:
                return StopReason.BUDGET
            if self._waiting:
                return StopReason.EXHAUSTED
        if not self._busy() and self._job is not None:
            self._job.done.wait(POLL_S)  # nothing to poll: wait on the proposer instead
        return None

    def _busy(self) -> bool:
        return bool(self._jobs) or bool(self._ready)

    def _limit_reason(self) -> StopReason | None:
        s = self.settings.config.limits
        if s.time_limit is not None and self.elapsed >= s.time_limit:
            return StopReason.TIME_LIMIT
        if s.max_tokens is not None and self.tokens >= s.max_tokens:
            return StopReason.MAX_TOKENS
        if s.max_cost is not None and self.cost >= s.max_cost:
            return StopReason.MAX_COST
        return None

    # -- proposals -----------------------------------------------------------------------
    def _maybe_propose(self) -> None:
        remaining = self.settings.config.budget - len(self.tree.nodes)
        action = self.policy.next_action(self.tree, remaining)
        self._save_branches()  # the policy may have pruned some
        self._waiting = action is None
        if action is None:
            return
        job = _Job(action=action)
        call = self._call_for(action)
        job.last_call_before = id(getattr(self.proposer, "last_call", None))

        def work() -> None:
            try:
                job.value = call()
            except BaseException as exc:  # reported as a failed proposal, never lost
                job.error = exc
            finally:
                job.done.set()

        job.thread = threading.Thread(target=work, name=f"nimm-proposer-{self.run_id}",
                                      daemon=True)
        self._job = job
        job.thread.start()

    def _call_for(self, action: Action):
        """Bind the proposer call now (in the driver thread) from a consistent tree view."""
        p = self.proposer
        # what the search has learnt and what is still running, as of this decision
        nodes = self.tree.snapshot()
        fits = self._fits = mechanism_fits(self.run_dir, nodes, self._fits)
        ref = reference_fit(nodes, fits)
        ctx = replace(self.context, memory=findings(self.tree), in_progress=in_progress(self.tree),
                      reference_one_step=ref and ref.one_step,
                      reference_sensitivity=ref.sensitivity if ref else {}, fits=fits,
                      prior_status=prior_status(nodes), prior_note=prior_weak_spots(nodes))
        if action.kind == "strategies":
            # near-duplicates rejected earlier are excluded too, so they are not offered again
            exclude = list(action.exclude) + [s for s in self._rejected_strategies
                                              if s not in action.exclude]
            return lambda: p.strategies(ctx, action.k, exclude)
        if action.kind == "draft":
            return lambda: p.draft(ctx, action.strategy)
        parent = self.tree.nodes[action.parent]
        strategy = self.tree.branches[parent.branch].strategy
        if action.kind == "distill":  # a probe job and a sparse fit (an LLM may then rewrite)
            weights, view = RunDir(self.run_dir).node_weights(parent), parent.view(strategy)
            return lambda: distill_proposal(self.task, parent, weights, self.train,
                                            self.settings.config.eval_timeout,
                                            proposer=p, ctx=ctx, view=view)
        if action.kind == "refine":
            view = history_view(self.tree, parent)
            history = branch_history(self.tree, parent.branch)
            return lambda: p.refine(ctx, view, history)
        if action.kind == "debug":
            view = parent.view(strategy)
            return lambda: p.debug(ctx, view)
        raise ValueError(f"unknown action {action.kind!r}")

    def _handle_proposal(self, job: _Job) -> None:
        if job.action.kind == "strategies":
            self._handle_strategies(job)
            return
        action = job.action
        if job.error is not None:
            prop = Proposal(code=None, change=action.kind,
                            error=f"proposer raised {type(job.error).__name__}: {job.error}")
        elif not isinstance(job.value, Proposal):
            prop = Proposal(code=None, change=action.kind,
                            error=f"proposer returned {type(job.value).__name__}, not a Proposal")
        else:
            prop = job.value
        self.tokens += int(prop.tokens_in) + int(prop.tokens_out)
        self.cost += float(prop.cost)
        model = self.settings.config.model or getattr(self.proposer, "model", None)
        cost_row = dict(operation=action.kind, tokens_in=prop.tokens_in,
                        tokens_out=prop.tokens_out, cost=prop.cost, model=model, raw=prop.raw)
        if prop.code:
            # Near-duplicate drafts are caught by code similarity, a heuristic for free-form
            # (LLM) code. A grammar proposer that declares each model's structure (meta
            # "genome") writes templated code where one changed line is a different model,
            # so only exact duplicates are rejected for it.
            near = self.settings.config.near_duplicate if action.kind == "draft" \
                and not (prop.meta or {}).get("genome") else None
            dup = duplicate_of(prop.code, self.tree.snapshot(), near=near)
            if dup is not None:
                self._reject(action, dup, cost_row)
                return
        self._rejects = 0
        self._create_node(action, prop, cost_row)

    def _reject(self, action: Action, dup: Node, cost_row: dict[str, Any]) -> None:
        self._rejects += 1
        self.journal.add_cost(node=None, **cost_row)
        reason = f"{action.kind} proposal duplicates node {dup.id}"
        self.policy.on_rejected(self.tree, action, reason)
        self._emit("log", {"message": f"rejected: {reason}", "kind": "rejected",
                           "duplicate_of": dup.id, "branch": action.branch})
        self._save_branches()

    def _create_node(self, action: Action, prop: Proposal, cost_row: dict[str, Any]) -> None:
        tree = self.tree
        parent = tree.nodes[action.parent] if action.parent is not None else None
        if action.kind == "draft":
            branch = tree.branches[action.branch] if action.branch is not None else \
                self._new_branch(action.strategy)
        else:
            branch = tree.branches[parent.branch]
        code = prop.code or ""
        node = Node(
            id=tree.next_node_id(), parent=parent.id if parent else None, branch=branch.id,
            operator=action.kind, strategy=branch.strategy.title if branch.strategy else None,
            change=(prop.change or action.kind).strip(),
            diff=unified_diff(parent.code, code, parent.id) if parent and code else "",
            code=code, state=NodeState.PENDING if code else NodeState.FAILED,
            error="" if code else (prop.error or "proposer returned no code"),
            tokens_in=int(prop.tokens_in), tokens_out=int(prop.tokens_out),
            cost=float(prop.cost),
            debug_depth=parent.debug_depth + 1 if action.kind == "debug" and parent else 0,
            proposer_meta=dict(prop.meta or {}),
        )
        if not code:
            node.finished = time.time()
        tree.add_node(node)
        events = [self._event("node_created", {
            "node": node.id, "parent": node.parent, "branch": node.branch,
            "operator": node.operator, "strategy": node.strategy, "change": node.change,
        })]
        if not code:
            events.append(self._finished_event(node))
        self.journal.save_node(node, events, cost=cost_row)
        for e in events:
            self.bus.publish(e)
        if code:
            self._ready.append(node.id)

    def _new_branch(self, strategy: Strategy | None):
        b = self.tree.add_branch(strategy)
        title = strategy.title if strategy else f"independent draft {b.id}"
        e = self._event("log", {
            "message": f"branch {b.id}: {title}", "kind": "branch_created", "branch": b.id,
            "strategy": strategy.title if strategy else None,
            "description": strategy.description if strategy else "",
        })
        self.journal.save_branch(b, [e])
        self.bus.publish(e)
        return b

    def _handle_strategies(self, job: _Job) -> None:
        last = getattr(self.proposer, "last_call", None)
        if isinstance(last, Proposal) and id(last) != job.last_call_before:
            self.tokens += int(last.tokens_in) + int(last.tokens_out)
            self.cost += float(last.cost)
            self.journal.add_cost("strategies", None, last.tokens_in, last.tokens_out,
                                  last.cost, getattr(self.proposer, "model", None), last.raw)
        found: list[Strategy] = []
        if job.error is not None:
            self._emit("log", {"message": f"strategy request failed: {job.error}",
                               "kind": "proposer_error"})
        elif isinstance(job.value, list):
            found = [s for s in job.value if isinstance(s, Strategy)]
        existing = [b.strategy for b in self.tree.branches.values() if b.strategy is not None]
        kept = diverse_strategies(found, existing, job.action.k)
        dropped = [s for s in found if s not in kept
                   and (not s.title.strip() or any(similar_strategies(s, o) for o in existing + kept))]
        if dropped:
            self._rejected_strategies += dropped
            self.journal.set_meta("rejected_strategies", [
                {"title": s.title, "description": s.description, "key": s.key}
                for s in self._rejected_strategies])
            self._emit("log", {"message": f"rejected {len(dropped)} near-duplicate strategies: "
                               + "; ".join(s.title for s in dropped), "kind": "rejected"})
        for s in kept:
            self._new_branch(s)
        if kept:
            self._empty_strategy_calls = 0
            return
        self._empty_strategy_calls += 1
        if self._empty_strategy_calls >= MAX_EMPTY_STRATEGY_CALLS:
            self.tree.strategies_exhausted = True
            self.journal.set_meta("strategies_exhausted", True)
            self._emit("log", {"message": "no new strategies; continuing with existing branches",
                               "kind": "strategies_exhausted"})

    def _save_branches(self) -> None:
        stored = {b.id: (b.status, b.rejects) for b in self.journal.load_branches()}
        for b in self.tree.branches.values():
            if stored.get(b.id) != (b.status, b.rejects):
                events = []
                if b.status is BranchState.PRUNED \
                        and stored.get(b.id, ("",))[0] is not BranchState.PRUNED:
                    events.append(self._event("log", {
                        "message": f"branch {b.id} pruned: {b.note}", "kind": "branch_pruned",
                        "branch": b.id}))
                self.journal.save_branch(b, events)
                for e in events:
                    self.bus.publish(e)

    # -- evaluations ---------------------------------------------------------------------
    def _fill_slots(self) -> None:
        while self._ready and len(self._jobs) < self.settings.config.workers:
            node = self.tree.nodes[self._ready.pop(0)]
            self._attempt += 1
            job_id = f"{self.run_id}:{node.id}:{self._attempt}"
            weights = RunDir(self.run_dir).weights_path(node.id)
            weights.parent.mkdir(parents=True, exist_ok=True)
            config = TrainConfig(**{**self.train.to_dict(), "save_weights": str(weights)})
            self.executor.submit(EvalRequest(job_id=job_id, source=node.code, task=self.task,
                                             config=config, timeout=self.settings.config.eval_timeout))
            self._jobs[job_id] = node.id
            node.state, node.started = NodeState.RUNNING, time.time()
            ev = self._event("node_started", {"node": node.id, "branch": node.branch,
                                              "job": job_id})
            self.journal.save_node(node, [ev])
            self.bus.publish(ev)

    def _handle_events(self, events: list[JobEvent]) -> None:
        for ev in events:
            node_id = self._jobs.get(ev.job_id)
            if node_id is None:
                continue  # a job of an earlier session or one we abandoned
            node = self.tree.nodes[node_id]
            if ev.kind == "progress":
                p = dict(ev.progress or {})
                data = {"node": node_id, "epoch": p.get("epoch"), "train": p.get("train"),
                        "val": p.get("val")}
                e = self._event("node_progress", data)
                self.bus.publish(e)
                now = time.time()
                if now - self._last_progress_write.get(node_id, 0.0) >= PROGRESS_JOURNAL_S:
                    self._last_progress_write[node_id] = now
                    self.journal.append_event(e)
            elif ev.kind == "done":
                del self._jobs[ev.job_id]
                if ev.result is None:
                    continue
                self._finish_node(node, ev)

    def _finish_node(self, node: Node, ev: JobEvent) -> None:
        result = ev.result
        assert result is not None
        if result.status is Status.CANCELLED and ev.job_id in self._cancelled:
            node.state, node.started = NodeState.PENDING, None
            self.journal.save_node(node)
            return
        weights = RunDir(self.run_dir).weights_path(node.id)
        if result.ok and not result.weights_path and weights.exists():
            result.weights_path = str(weights)
        node.result = result
        node.state = NodeState.DONE if result.ok else NodeState.FAILED
        node.finished = time.time()
        events = [self._finished_event(node)]
        branch = self.tree.branches.get(node.branch)
        if branch is not None and branch.rejects and self.tree.branch_best(branch.id) is node:
            branch.rejects = 0  # an improvement restarts the branch's stagnation count
            self.journal.save_branch(branch)
        # the answer may move to an earlier, simpler node once this one sets a new lowest score
        best = self.tree.answer()
        if best is not None and best.id != self._best_id:
            self._best_id = best.id
            events.append(self._event("best_changed", event_data.best_changed(best)))
        self.journal.save_node(node, events)
        self.journal.set_meta("elapsed", self.elapsed)
        for e in events:
            self.bus.publish(e)

    def _finished_event(self, node: Node) -> Event:
        return self._event("node_finished", event_data.node_finished(node))

    # -- events and shutdown -------------------------------------------------------------
    def _event(self, type_: str, data: dict[str, Any]) -> Event:
        return Event(type=type_, run_id=self.run_id, data=event_data.finite(data))

    def _emit(self, type_: str, data: dict[str, Any]) -> None:
        e = self._event(type_, data)
        self.journal.append_event(e)
        self.bus.publish(e)

    def _finish(self, reason: str, status: RunState) -> None:
        self.stop_reason, self.status = reason, status
        try:
            for job_id in list(self._jobs):
                self._cancelled.add(job_id)
                try:
                    self.executor.cancel(job_id)
                except Exception:  # the executor may already be gone
                    pass
                node = self.tree.nodes[self._jobs.pop(job_id)]
                node.state, node.started = NodeState.PENDING, None
                self.journal.save_node(node)
            if self.own_executor:
                try:
                    self.executor.shutdown()
                except Exception:
                    pass
            self.journal.set_meta("elapsed", self.elapsed)
            self.journal.update_search(status=status, stop_reason=reason)
            self._emit("search_finished", event_data.search_finished(
                reason, status, self.tree, tokens=self.tokens, cost=self.cost,
                elapsed=self.elapsed))
        finally:
            # Nothing writes after this: release the SQLite connection (one per search
            # otherwise stays open until garbage collection, a notebook may run many).
            try:
                self.journal.close()
            except Exception:
                pass
            self.finished.set()

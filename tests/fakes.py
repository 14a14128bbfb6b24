"""Test doubles for the search engine: an in-process executor and a scripted proposer.

Fake candidates are not real models; they are short texts the fake executor "evaluates"
by reading directives:

* ``SCORE = 0.37`` (or ``# score: 0.37``) - the normalised validation RMSE to report;
* ``# fail: runtime_error`` - report that status with a message instead;
* ``# sleep: 0.2`` - take that long (seconds) to evaluate.
"""
from __future__ import annotations

import queue
import random
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from nimm_jupyter.execution.base import EvalRequest, Executor, JobEvent
from nimm_jupyter.modeling.result import EvalResult, SplitScores, Status
from nimm_jupyter.proposers.base import NodeView, Proposal, ProposalContext, Proposer, Strategy

_SCORE = re.compile(r"^\s*(?:SCORE\s*=\s*|#\s*score:\s*)([-+0-9.eE]+)", re.M)
_FAIL = re.compile(r"^\s*#\s*fail:\s*(\w+)", re.M)
_SLEEP = re.compile(r"^\s*#\s*sleep:\s*([0-9.]+)", re.M)


def fake_evaluate(source: str) -> EvalResult:
    """What the fake executor reports for ``source`` (deterministic)."""
    fail = _FAIL.search(source)
    if fail:
        status = Status(fail.group(1))
        return EvalResult.failure(status, f"fake {status.value}: the model blew up at line 3")
    m = _SCORE.search(source)
    if not m:
        return EvalResult.failure(Status.CONTRACT_ERROR, "no SCORE line in the fake candidate")
    s = float(m.group(1))
    return EvalResult(
        status=Status.OK,
        train=SplitScores(rmse=s * 9.0, rmse_norm=s * 0.9),
        val=SplitScores(rmse=s * 10.0, rmse_norm=s),
        test=SplitScores(rmse=s * 11.0, rmse_norm=s * 1.1),
        loss_curve=[{"epoch": 0, "train": s * 2, "val": s * 2}, {"epoch": 1, "train": s, "val": s}],
        parameters={"rho": 0.1}, n_parameters=3, epochs=2,
    )


class FakeExecutor(Executor):
    """Runs fake evaluations in ``workers`` threads; honours cancel; records what it ran."""

    def __init__(self, workers: int = 1, delay: float = 0.0, epochs: int = 2) -> None:
        self.workers = workers
        self.delay, self.epochs = delay, epochs
        self._queue: "queue.Queue[EvalRequest | None]" = queue.Queue()
        self._events: "queue.Queue[JobEvent]" = queue.Queue()
        self._lock = threading.Lock()
        self._open: set[str] = set()
        self._cancelled: set[str] = set()
        self.started: list[tuple[str, str]] = []  # (job_id, source) in start order
        self.submitted: list[EvalRequest] = []
        self.active = 0
        self.max_active = 0
        self.closed = False
        self._threads = [threading.Thread(target=self._work, daemon=True) for _ in range(workers)]
        for t in self._threads:
            t.start()

    def submit(self, request: EvalRequest) -> None:
        with self._lock:
            self._open.add(request.job_id)
            self.submitted.append(request)
        self._queue.put(request)

    def cancel(self, job_id: str) -> None:
        with self._lock:
            self._cancelled.add(job_id)

    def poll(self, timeout: float = 0.1) -> list[JobEvent]:
        out = []
        try:
            out.append(self._events.get(timeout=timeout) if timeout > 0 else
                       self._events.get_nowait())
        except queue.Empty:
            return out
        while True:
            try:
                out.append(self._events.get_nowait())
            except queue.Empty:
                return out

    def running(self) -> int:
        with self._lock:
            return len(self._open)

    def shutdown(self) -> None:
        self.closed = True
        with self._lock:
            self._cancelled |= set(self._open)
        for _ in self._threads:
            self._queue.put(None)

    # -- worker --------------------------------------------------------------------------
    def _done(self, req: EvalRequest, result: EvalResult) -> None:
        with self._lock:
            self._open.discard(req.job_id)
        self._events.put(JobEvent(req.job_id, "done", result=result))

    def _work(self) -> None:
        while True:
            req = self._queue.get()
            if req is None:
                return
            if req.job_id in self._cancelled:
                self._done(req, EvalResult.failure(Status.CANCELLED, "cancelled"))
                continue
            with self._lock:
                self.started.append((req.job_id, req.source))
                self.active += 1
                self.max_active = max(self.max_active, self.active)
            m = _SLEEP.search(req.source)
            delay = float(m.group(1)) if m else self.delay
            cancelled = False
            for epoch in range(self.epochs):
                end = time.time() + delay / max(self.epochs, 1)
                while time.time() < end:
                    if req.job_id in self._cancelled:
                        cancelled = True
                        break
                    time.sleep(0.005)
                if cancelled:
                    break
                self._events.put(JobEvent(req.job_id, "progress",
                                          progress={"epoch": epoch, "train": 1.0, "val": 1.0}))
            with self._lock:
                self.active -= 1
            if cancelled or req.job_id in self._cancelled:
                self._done(req, EvalResult.failure(Status.CANCELLED, "cancelled"))
            else:
                self._done(req, fake_evaluate(req.source))


def fake_code(tag: str, score: float, *, fail: str | None = None, sleep: float | None = None,
              variant: int = 0) -> str:
    lines = [f"# fake candidate for {tag}", f"SCORE = {score:.6f}", f"VARIANT = {variant}"]
    lines.append(f"TAG = {tag!r}")
    if fail:
        lines.append(f"# fail: {fail}")
    if sleep:
        lines.append(f"# sleep: {sleep}")
    return "\n".join(lines) + "\n"


def code_score(code: str) -> float:
    m = _SCORE.search(code)
    return float(m.group(1)) if m else float("inf")


@dataclass
class Call:
    kind: str
    time: float
    running: int  # executor.running() when the call started (overlap checks)
    arg: Any = None


class FakeProposer(Proposer):
    """A scripted proposer.

    ``titles``: the strategy titles it offers, in order (repeats allowed, to test rejection).
    ``draft_scores``: title -> draft score (default 1.0). ``factors``: title -> multiplier a
    refinement applies to its parent's score (default 0.9; > 1 makes a branch stagnate).
    ``fail_drafts``: titles whose draft fails with a runtime error; ``debug_fixes`` decides
    whether a debug attempt removes the failure. ``sleep`` adds an evaluation delay directive
    to every candidate and ``delay`` makes each proposer call take that long.
    """

    name = "fake"

    def __init__(self, titles: list[str] | None = None, *, draft_scores: dict[str, float] | None = None,
                 factors: dict[str, float] | None = None, fail_drafts: set[str] | None = None,
                 debug_fixes: bool = True, sleep: float | None = None, delay: float = 0.0,
                 tokens: tuple[int, int] = (100, 50), cost: float = 0.001, seed: int = 0,
                 executor: Executor | None = None, same_refine: bool = False,
                 same_draft: bool = False, leak: str | None = None) -> None:
        self.titles = titles if titles is not None else ["alpha", "beta", "gamma", "delta",
                                                         "epsilon", "zeta", "eta", "theta"]
        self.draft_scores = draft_scores or {}
        self.factors = factors or {}
        self.fail_drafts = fail_drafts or set()
        self.debug_fixes, self.sleep, self.delay = debug_fixes, sleep, delay
        self.tokens, self.cost_per_call = tokens, cost
        self.rng = random.Random(seed)
        self.executor = executor
        self.same_refine, self.same_draft, self.leak = same_refine, same_draft, leak
        self.calls: list[Call] = []
        self.contexts: list[ProposalContext] = []
        self._n = 0
        self.last_call: Proposal | None = None

    def _record(self, kind: str, arg: Any = None) -> None:
        running = self.executor.running() if self.executor is not None else 0
        self.calls.append(Call(kind, time.time(), running, arg))
        if self.delay:
            time.sleep(self.delay)

    def _proposal(self, code: str | None, change: str, error: str | None = None) -> Proposal:
        self._n += 1
        raw = f"response {self._n}" + (f" {self.leak}" if self.leak else "")
        return Proposal(code=code, change=change, error=error, tokens_in=self.tokens[0],
                        tokens_out=self.tokens[1], cost=self.cost_per_call, raw=raw,
                        meta={"n": self._n})

    def strategies(self, ctx: ProposalContext, k: int, exclude: list[Strategy]) -> list[Strategy]:
        self.contexts.append(ctx)
        self._record("strategies", k)
        taken = {s.title for s in exclude}
        # repeats in ``titles`` are offered as-is: the search must reject them
        out = [Strategy(t, f"attach a network for {t}") for t in self.titles if t not in taken][:k]
        self.last_call = Proposal(code=None, change="strategies", tokens_in=self.tokens[0],
                                  tokens_out=self.tokens[1], cost=self.cost_per_call,
                                  raw="strategies" + (f" {self.leak}" if self.leak else ""))
        return out

    def draft(self, ctx: ProposalContext, strategy: Strategy | None) -> Proposal:
        self.contexts.append(ctx)
        self._record("draft", strategy.title if strategy else None)
        if strategy is None:
            tag = "same" if self.same_draft else f"sample{self._n}"
            score = self.draft_scores.get(tag, round(self.rng.uniform(0.5, 1.5), 4))
        else:
            tag = "same" if self.same_draft else strategy.title
            score = self.draft_scores.get(strategy.title, 1.0)
        fail = "runtime_error" if (strategy and strategy.title in self.fail_drafts) else None
        return self._proposal(fake_code(tag, score, fail=fail, sleep=self.sleep),
                              f"draft {tag}")

    def refine(self, ctx: ProposalContext, parent: NodeView, history: list[NodeView]) -> Proposal:
        self._record("refine", (parent.id, [h.id for h in history]))
        tag = parent.strategy.title if parent.strategy else f"node{parent.id}"
        factor = self.factors.get(tag, 0.9)
        score = code_score(parent.code) * factor
        variant = 0 if self.same_refine else self._n + 1
        return self._proposal(fake_code(tag, score, sleep=self.sleep, variant=variant),
                              f"scale by {factor}")

    def debug(self, ctx: ProposalContext, failed: NodeView) -> Proposal:
        self._record("debug", failed.id)
        tag = failed.strategy.title if failed.strategy else f"node{failed.id}"
        fail = None if self.debug_fixes else "runtime_error"
        return self._proposal(fake_code(tag, code_score(failed.code), fail=fail,
                                        sleep=self.sleep, variant=self._n + 1),
                              f"fix {failed.status}")


@dataclass
class Recorder:
    """Collects events (subscribe ``recorder`` to a search)."""

    events: list = field(default_factory=list)

    def __call__(self, event) -> None:
        self.events.append(event)

    def types(self) -> list[str]:
        return [e.type for e in self.events]


def wait_for_done(run_dir, n: int, proc, timeout: float = 120) -> None:
    """Wait until ``n`` nodes of the search journaled in ``run_dir`` have finished.

    ``proc`` is the subprocess running that search; it must not exit first.
    """
    from nimm_jupyter.search.api import open_run

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"search exited early ({proc.returncode}): {err}")
        if (run_dir / "journal.sqlite").exists():
            try:
                if sum(node.completed for node in open_run(run_dir).nodes) >= n:
                    return
            except Exception:  # the journal is being created
                pass
        time.sleep(0.05)
    raise AssertionError(f"fewer than {n} nodes finished in {timeout} s")


def kill_9_after(run_dir, n: int, proc) -> None:
    """SIGKILL the search process ``proc`` once ``n`` of its nodes have finished."""
    import os
    import signal

    try:
        wait_for_done(run_dir, n, proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()

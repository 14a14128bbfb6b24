"""The driver owns every score (issue 15 item 1): a job never holds validation or test targets, the
scores it claims are ignored, and what it rebinds in its own interpreter cannot reach the
driver's numbers. Each attack is checked against the honest prior on the same task."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import PRIOR, TASK, probe, report, run
from nimm_jupyter.execution.job import driver_scores
from nimm_jupyter.execution.protocol import FrameReader, ProtocolViolation, encode_array
from nimm_jupyter.modeling.result import Status
from nimm_jupyter.modeling.scoring import prediction_shape, score_predictions

pytestmark = pytest.mark.timeout(180)


def _fingerprint(split: str, task=TASK) -> list[float]:
    """Target values the candidate looks for (steps after the context: what is scored)."""
    return [float(v) for v in np.asarray(task.split(split).targets)[:, task.context:].ravel()]


def _target_search(task=TASK) -> str:
    """A candidate that walks every object the collector knows and every frame's locals
    for ``task``'s scored target values and reports how many it found per split."""
    return probe(f'''
import gc
import numpy as np
WANT = {{"train": {_fingerprint("train", task)!r}, "val": {_fingerprint("val", task)!r},
        "test": {_fingerprint("test", task)!r}}}

def arrays():
    seen = dict()
    for o in gc.get_objects():
        if isinstance(o, (list, tuple)):
            values = o
        else:  # instance attributes need not be a separate dict the collector lists
            d = o if isinstance(o, dict) else getattr(o, "__dict__", None)
            values = d.values() if isinstance(d, dict) else ()
        for v in values:
            if isinstance(v, np.ndarray) and v.dtype.kind == "f" and v.size:
                seen[id(v)] = v
    f = sys._getframe()
    while f is not None:
        seen.update((id(v), v) for v in f.f_locals.values() if isinstance(v, np.ndarray) and v.size)
        f = f.f_back
    return list(seen.values())

ALL = arrays()

def hits(split):
    want = np.asarray(WANT[split])
    return sum(int(np.isin(want, a.ravel()).sum()) for a in ALL)

check("train", lambda: hits("train"))
check("val", lambda: hits("val"))
check("test", lambda: hits("test"))
''')


def test_targets_are_not_in_the_job_process(jailed):
    """The search finds the training targets (so the search works), never the validation
    or test targets."""
    r = run(jailed, _target_search(), timeout=120)
    found = report(r)
    assert set(found) == {"train", "val", "test"}, r.message
    assert int(found["train"]) > 0, found  # the search does find targets that are there
    assert found["val"] == "0" and found["test"] == "0", found


def test_later_windows_contexts_are_not_in_the_job_process(jailed):
    """On a windowed series the later windows' contexts hold the earlier windows' targets:
    the job holds only the contexts of the windows that start first (the window reveal)."""
    import time

    from nimm_jupyter.execution import EvalRequest, TrainConfig
    from test_window_reveal import series_task

    task = series_task()
    job = f"w{time.monotonic_ns()}"
    jailed.submit(EvalRequest(job, _target_search(task), task, TrainConfig(max_epochs=3),
                              timeout=120))
    r = jailed.wait(job)
    found = report(r)
    assert set(found) == {"train", "val", "test"}, r.message
    assert int(found["train"]) > 0, found
    assert found["val"] == "0" and found["test"] == "0", found


def test_forged_done_frame_with_perfect_scores_is_rescored(jailed):
    """The candidate writes its own ``done`` frame (val and test RMSE 0, plus predictions of
    the right shape) and exits before the real one: the driver ignores the claimed scores
    and scores the predictions it was given."""
    zeros = {s: encode_array(np.zeros(prediction_shape(TASK, s))) for s in ("train", "val", "test")}
    src = probe(f'''
import json, stat
def forge():
    perfect = {{"rmse": 0.0, "rmse_norm": 0.0, "per_target": {{"y": 0.0}}}}
    frame = (json.dumps({{"kind": "done", "result": {{"status": "ok", "train": perfect,
             "val": perfect, "test": perfect}}, "predictions": {zeros!r}}}) + "\\n").encode()
    for fd in map(int, os.listdir("/proc/self/fd")):
        try:
            if stat.S_ISFIFO(os.fstat(fd).st_mode) and fd > 2:
                os.write(fd, frame)
        except OSError:
            pass
    os._exit(0)
check("forged", forge)
''')
    r = run(jailed, src)
    assert r.status is Status.OK, r.message
    honest = {s: score_predictions(TASK, s, np.zeros(prediction_shape(TASK, s))) for s in ("val", "test")}
    assert r.val.rmse == pytest.approx(honest["val"].rmse) and r.val.rmse > 0.5
    assert r.test.rmse == pytest.approx(honest["test"].rmse) and r.test.rmse > 0.5


def test_rebinding_sqrt_and_tensor_sub_cannot_change_the_drivers_numbers(harness):
    honest = run(harness, PRIOR, max_epochs=20)
    hacked = run(harness, "import math\nimport torch\nmath.sqrt = lambda x: 0.0\n"
                 "torch.Tensor.__sub__ = lambda a, b: a * 0.0\n" + PRIOR, max_epochs=20)
    assert honest.ok, honest.message
    # the job's own training may break (its loss is now zero): never a better score
    if hacked.ok:
        assert hacked.val.rmse >= honest.val.rmse * (1 - 1e-9) and hacked.val.rmse > 0
        assert hacked.test.rmse > 0
    else:
        assert hacked.val.rmse != 0.0


def _done(result: dict, predictions=None) -> bytes:
    frame = {"kind": "done", "result": result}
    if predictions is not None:
        frame["predictions"] = predictions
    return b"".join(json.dumps(f).encode() + b"\n" for f in ({"kind": "started"}, frame))


def test_driver_replaces_claimed_scores_and_checks_shapes():
    perfect = {"rmse": 0.0, "rmse_norm": 0.0, "per_target": {"y": 0.0}}
    claim = {"status": "ok", "train": perfect, "val": perfect, "test": perfect}
    ones = {s: encode_array(np.ones(prediction_shape(TASK, s))) for s in ("train", "val", "test")}
    reader = FrameReader(TASK.target_names)
    reader.feed(_done(claim, ones))
    r = driver_scores(TASK, reader.result, reader.predictions)
    for s in ("train", "val", "test"):
        want = score_predictions(TASK, s, np.ones(prediction_shape(TASK, s)))
        assert getattr(r, s) == want and getattr(r, s).rmse > 0
    for bad in (None, {**ones, "test": encode_array(np.ones((1, 1)))},
                {k: v for k, v in ones.items() if k != "val"}):
        reader = FrameReader(TASK.target_names)
        reader.feed(_done(claim, bad))
        with pytest.raises(ProtocolViolation):
            driver_scores(TASK, reader.result, reader.predictions)
    nan = {**ones, "val": encode_array(np.full(prediction_shape(TASK, "val"), np.nan))}
    reader = FrameReader(TASK.target_names)
    reader.feed(_done(claim, nan))
    assert driver_scores(TASK, reader.result, reader.predictions).status is Status.DIVERGED
    shape = list(prediction_shape(TASK, "val"))
    for garbage in ("not numbers", [[1.0]], {"dtype": "object", "shape": shape, "data": ""},
                    {"dtype": "float64", "shape": shape, "data": "AAAA"},
                    {"dtype": "float64", "shape": [-1], "data": ""}):
        reader = FrameReader(TASK.target_names)
        reader.feed(_done({"status": "ok"}, {"val": garbage}))
        assert reader.violation is not None and "predictions" in reader.violation, garbage


# -- the sequential one-step reveal (issue 16 item 2): no target before its prediction -------
READ_AHEAD = '''import torch
from torch import nn

SEEN = {}  # every state it was ever sent, by batch (its first states): keeps all, uses the latest


class Model(nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, y_context, u, t):
        s = y_context.shape[1]
        key = tuple(y_context[:, 0].flatten().tolist())
        kept = SEEN.get(key)
        if kept is None or kept.shape[1] < s:
            SEEN[key] = kept = y_context.detach().clone()
        # the latest state it has seen for these samples, as every step it is asked for
        return kept[:, -1:].expand(-1, t.shape[0] - s, -1) + 0.0 * self.w
'''


def _persistence_rmse(split: str) -> float:
    """Step s predicted as the true step s-1, computed here from the task alone."""
    y = np.asarray(TASK.split(split).targets, dtype=np.float64)
    err = y[:, TASK.context:] - y[:, TASK.context - 1:-1]
    return float(np.sqrt(np.mean(err ** 2)))


def test_a_candidate_that_keeps_what_it_is_sent_gets_only_persistence(harness):
    """The reveal sends step s only after the prediction of step s: a candidate that hoards
    every state and answers with the latest one scores exactly the persistence error."""
    r = run(harness, READ_AHEAD, timeout=120)
    assert r.ok, r.message
    for split in ("val", "test"):
        scores = getattr(r, split)
        assert scores.rmse_one_step == pytest.approx(_persistence_rmse(split), rel=1e-6), split
        assert scores.rmse_one_step > 0 and scores.per_target_one_step.keys() == {"y"}


STALL = '''import torch
from torch import nn


class Model(nn.Module):
    """Honest until the driver has revealed a validation or test step (batch of 4, context
    longer than the task's), then it never answers."""

    def __init__(self, spec):
        super().__init__()
        self.k = nn.Parameter(torch.tensor(0.5))
        self.context = int(spec.context)

    def forward(self, y_context, u, t):
        if y_context.shape[0] == 4 and y_context.shape[1] > self.context:
            while True:
                pass
        s = y_context.shape[1]
        dt = (t[s:] - t[s - 1]).reshape(1, -1, 1)
        return y_context[:, -1:] * torch.exp(-self.k * dt)
'''


def test_a_job_that_stops_answering_mid_reveal_ends_as_a_timeout(harness, monkeypatch):
    from nimm_jupyter.execution import reveal

    monkeypatch.setattr(reveal, "STEP_TIMEOUT_S", 3.0)
    r = run(harness, STALL, timeout=120)
    assert r.status is Status.TIMEOUT, r.message
    hangs_at = f"val step {TASK.context + 1}"  # the first step after a revealed one
    assert "stopped answering the one-step reveal" in r.message and hangs_at in r.message, r.message


def _frame(obj) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def forging_candidate(commit: bytes, frames: list[bytes], answered: list[bool], end: bytes) -> str:
    """A candidate that plays the job's side at import: it writes ``commit`` and each of
    ``frames`` on the result pipe, reading the driver's answer after each frame that is
    ``answered``, writes what it read into its weights file, then writes ``end`` and exits."""
    return f'''import torch
from torch import nn
os = torch.os
COMMIT, STEPS, END = {commit!r}, {frames!r}, {end!r}
ANSWERED = {answered!r}
writers, readers, harvested = [], [], []
weights = [fd for fd in map(int, os.listdir("/proc/self/fd")) if fd > 2
           and os.path.exists("/proc/self/fd/%d" % fd)
           and os.readlink("/proc/self/fd/%d" % fd).endswith("weights.pt")]
for fd in weights:
    os.write(fd, b"before the reveal")
for fd in map(int, os.listdir("/proc/self/fd")):
    try:
        if fd <= 2 or os.fstat(fd).st_mode & 0o170000 != 0o010000:  # not a pipe
            continue
    except OSError:  # the listing's own descriptor, closed by now
        continue
    try:
        os.write(fd, COMMIT)
        writers.append(fd)  # the result pipe
    except OSError:
        readers.append(fd)  # the read end: the reveal pipe
for frame, answered in zip(STEPS, ANSWERED):
    for fd in writers:
        os.write(fd, frame)
    if answered:
        got = b""
        while not got.endswith(b"\\n"):
            got += os.read(readers[0], 1 << 20)
        harvested.append(got)
for fd in weights:  # what it saw, into the weights a user may load later
    os.write(fd, b" and after: " + b"".join(harvested))
for fd in writers:
    os.write(fd, END)
os._exit(0)


class Model(nn.Module):
    pass
'''


@pytest.mark.parametrize("forge", [True, False])
def test_targets_harvested_by_forging_the_reveal_buy_nothing(harness, scratch, forge):
    """The candidate plays the job's side itself: it commits zero predictions, walks the whole
    reveal with zero one-step predictions (reading every true step off the reveal pipe), then
    either forges a ``done`` with perfect predictions (refused: ``crashed``) or ends the
    reveal and exits (scored on what it committed before it saw anything; what it writes
    into its weights file afterwards is not kept)."""
    steps = [(s, k) for s in ("val", "test") for k in range(TASK.context, TASK.val.targets.shape[1])]
    n, _, S = TASK.val.targets.shape
    zeros = {s: encode_array(np.zeros(prediction_shape(TASK, s))) for s in ("train", "val", "test")}
    commit = _frame({"kind": "commit", "result": {"status": "ok", "weights_path": "w.pt"},
                     "predictions": zeros})
    one_steps = [_frame({"kind": "one_step", "split": s, "step": k,
                         "prediction": encode_array(np.zeros((n, S)))}) for s, k in steps]
    perfect = {s: encode_array(np.asarray(TASK.split(s).targets)[:, TASK.context:])
               for s in ("val", "test")}
    end = _frame({"kind": "done", "result": {"status": "ok"}, "predictions": {**zeros, **perfect}}
                 if forge else {"kind": "done"})
    src = forging_candidate(commit, one_steps,
                            [k < TASK.val.targets.shape[1] - 1 for _, k in steps], end)
    saved = scratch / f"weights_{forge}.pt"
    r = run(harness, src, timeout=120, save_weights=str(saved))
    if forge:
        assert r.status is Status.CRASHED and "one-step reveal" in r.message, r.message
    else:  # exactly what the zeros it committed earn, rollout and one-step
        assert r.status is Status.OK, r.message
        for s in ("val", "test"):
            want = score_predictions(TASK, s, np.zeros(prediction_shape(TASK, s)))
            assert getattr(r, s).rmse == pytest.approx(want.rmse) and want.rmse > 0.5
            y = np.asarray(TASK.split(s).targets)[:, TASK.context:]
            assert getattr(r, s).rmse_one_step == pytest.approx(float(np.sqrt(np.mean(y ** 2))))
        # the weights are kept as they were at commit, before anything was revealed
        assert r.weights_path == str(saved) and saved.read_bytes() == b"before the reveal"


@pytest.mark.parametrize("forge", [True, False])
def test_contexts_harvested_by_forging_the_window_reveal_buy_nothing(harness, forge):
    """The same on a windowed series: it commits, sends zero rollouts for every window
    start (reading every next start's contexts off the reveal pipe), then forges a ``done``
    with perfect predictions (``crashed``) or ends the reveal (scored on its zeros)."""
    import time

    from nimm_jupyter.execution import EvalRequest, TrainConfig
    from nimm_jupyter.modeling.scoring import window_stages
    from test_window_reveal import series_task

    task = series_task()
    stages = window_stages(task)
    H, S = task.val.targets.shape[1] - task.context, task.val.targets.shape[2]
    zeros = {s: encode_array(np.zeros(prediction_shape(task, s))) for s in ("train", "val", "test")}
    commit = _frame({"kind": "commit", "result": {"status": "ok"}, "predictions": zeros})
    frames = [_frame({"kind": "windows", "start": a, "predictions": {
        s: encode_array(np.zeros((len(rows), H, S))) for s, rows in idx.items()}})
        for a, idx in stages]
    perfect = {s: encode_array(np.asarray(task.split(s).targets)[:, task.context:])
               for s in ("val", "test")}
    end = _frame({"kind": "done", "result": {"status": "ok"}, "predictions": {**zeros, **perfect}}
                 if forge else {"kind": "done"})
    src = forging_candidate(commit, frames, [k < len(stages) - 1 for k in range(len(stages))], end)
    job = f"wf{time.monotonic_ns()}"
    harness.submit(EvalRequest(job, src, task, TrainConfig(max_epochs=3), timeout=120))
    r = harness.wait(job)
    if forge:
        assert r.status is Status.CRASHED and "reveal" in r.message, r.message
    else:
        assert r.status is Status.OK, r.message
        for s in ("val", "test"):
            want = score_predictions(task, s, np.zeros(prediction_shape(task, s)))
            assert getattr(r, s).rmse == pytest.approx(want.rmse) and want.rmse > 5

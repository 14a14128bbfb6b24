"""One job of the :class:`~nimm_jupyter.execution.local.LocalExecutor`, as the driver tracks it:
its pipe's :class:`~.protocol.FrameReader`, its process, what killed it, and what it left.

The executor owns scheduling and limits; this record owns the per-job verdicts: what a
protocol violation means, where the weights go, how an unreported end is classified.
"""
from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass

from ..modeling.result import EvalResult, Status
from .base import EvalRequest, TrainConfig
from .forkserver import classify_exit
from .protocol import FrameReader
from .sandbox import FILE_SIZE_LIMIT, WEIGHTS_FILE

__all__ = ["Job"]


@dataclass
class Job:
    request: EvalRequest
    config: TrainConfig
    slot: int
    device: str
    workdir: str  # the driver-side work dir (request, output log, weights)
    reader: FrameReader
    fd: int | None = None
    received: int = 0
    pid: int | None = None
    spawned_at: float | None = None
    deadline: float | None = None
    kill_reason: Status | None = None
    kill_message: str = ""
    exit_code: int | None = None
    exit_known: bool = False
    exited_at: float | None = None
    eof: bool = False
    eof_at: float | None = None
    result: EvalResult | None = None
    result_at: float | None = None
    error: str | None = None
    delivered: bool = False  # the done event was produced (the process may still be exiting)

    def take_verdict(self, now: float) -> bool:
        """Adopt what the reader decided; True when the job must be killed (a protocol
        violation, which voids any result: the job is ``crashed``)."""
        reader = self.reader
        if reader.violation is not None:
            if self.result is None and self.kill_reason is not None:
                return False  # already being killed for time, memory or a cancel
            self.result = None
            self.kill_reason, self.kill_message = Status.CRASHED, (
                f"the evaluation broke the result protocol ({reader.violation}); "
                "its report was discarded")
            return True
        if reader.result is not None and self.result is None:
            self.result, self.result_at = reader.result, now
        elif reader.error is not None and self.error is None:
            self.error = reader.error
        return False

    def collect_weights(self, result: EvalResult) -> str | None:
        """Move the job's weights file to the path the request asked for, if it is a plain
        file of a sane size (not a link a candidate planted); the path, or None."""
        target = self.config.save_weights
        if not (target and result.ok and result.weights_path):
            return None
        src = os.path.join(self.workdir, WEIGHTS_FILE)
        try:
            info = os.lstat(src)
            if not stat.S_ISREG(info.st_mode) or info.st_size > FILE_SIZE_LIMIT or info.st_nlink != 1:
                return None
            shutil.move(src, target)
            return target
        except OSError:
            return None

    def classify(self) -> EvalResult:
        """The result of a job that ended without an accepted report."""
        return classify_exit(self.exit_code, self.workdir, kill_reason=self.kill_reason,
                             kill_message=self.kill_message, error=self.error)

"""Stop a shard cleanly on a signal, and hand it back to Slurm when its time runs out.

A running shard is asked to stop in three ways, and in each it writes every
finished file's rows and exits at once (the work in flight is dropped, not
waited for, so the stop comes in seconds however long a request takes); the next
attempt skips the written files and redoes the rest:

- SIGTERM: `scancel`, preemption, `scontrol requeue`, or a local `kill`. Slurm
  requeues a preempted task itself (when the job was submitted with --requeue),
  and a cancelled one stays cancelled, so the shard only has to exit in time
  (before Slurm's KillWait turns the TERM into a KILL).
- SIGUSR2: `omnibatch submit` asks Slurm for it (`--signal=B:USR2@margin`) ahead of
  the time limit. Slurm would kill the task at the limit and never run it again,
  so the shard requeues itself (`scontrol requeue`) before exiting. As in
  submitit, a time limit is told apart from a preemption that sends the user
  signal (`PreemptParameters=send_user_signal`): a shard that ran into its time
  limit without finishing a single item in the whole attempt is not requeued
  (it would time out forever); a preempted one always is.
- SIGINT (Ctrl-C at a terminal): the first one stops as above, a second one
  stops at once, without writing the rows still waiting in memory.

The stop is checked between engine steps, and one step can be long (a batch of
30 s regions through transformers on a CPU, a batch of speech). So a stop also
has a deadline (`stop_deadline_s`): inside Slurm's margin for USR2, inside its
KillWait for TERM. Past it the attempt is recorded, requeued if it should be,
and the process exits without the step in flight; what was committed stays, the
few files finished since the last commit are redone.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

log = logging.getLogger("omnibatch")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR2, signal.SIGINT)


@dataclass
class StopRequest:
    """Set by a signal handler; the scheduler polls it between engine steps (`should_stop`)."""

    signum: int | None = None
    received_at: float | None = None

    def __call__(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else "none"

    @property
    def time_limit(self) -> bool:
        return self.signum == signal.SIGUSR2


@contextmanager
def stop_on_signals(signals: tuple[int, ...] = STOP_SIGNALS,
                    on_stop: Callable[[StopRequest], None] | None = None) -> Iterator[StopRequest]:
    """Install handlers that record the first stop signal; restore the previous ones on exit.

    `on_stop(request)` runs once, on the first stop signal (from the handler: keep it short).
    Off the main thread (where Python cannot install handlers) the request never fires.
    """
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handle(signum: int, frame: object) -> None:
        if signum == signal.SIGINT and request.signum == signal.SIGINT:
            raise KeyboardInterrupt
        if request.signum is None:
            request.signum, request.received_at = signum, time.time()
            hint = " (Ctrl-C again to stop at once)" if signum == signal.SIGINT else ""
            # A handler may interrupt a logging call; a plain write cannot deadlock on its lock.
            os.write(sys.stderr.fileno(), f"omnibatch: got {signal.Signals(signum).name}, stopping: writing "
                     f"the finished files{hint}\n".encode())
            if on_stop is not None:
                on_stop(request)

    previous = {s: signal.signal(s, handle) for s in signals}
    try:
        yield request
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def slurm_job_id(env: Mapping[str, str] = os.environ) -> str | None:
    """This task's id as scontrol takes it: `<array job>_<task>` in an array, else the job id."""
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID") or None


def seconds_left(job_id: str) -> float | None:
    """Time left before the job's limit, from squeue (None when it cannot tell)."""
    try:
        out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%L"], capture_output=True, text=True,
                             timeout=30, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_slurm_duration(out.splitlines()[0]) if out else None


def parse_slurm_duration(text: str) -> float | None:
    """`[days-]hours:minutes:seconds`, `minutes:seconds` or `seconds` -> seconds; None for others."""
    days, _, rest = text.strip().rpartition("-")
    try:
        parts = [int(p) for p in rest.split(":")]
        whole_days = int(days) if days else 0
    except ValueError:
        return None
    if not 1 <= len(parts) <= 3:
        return None
    while len(parts) < 3:
        parts.insert(0, 0)
    hours, minutes, secs = parts
    return float(((whole_days * 24 + hours) * 60 + minutes) * 60 + secs)


def near_time_limit(job_id: str, margin_s: float) -> bool:
    """Whether a USR2 came with the time limit (not a preemption): little time is left."""
    left = seconds_left(job_id)
    return left is None or left <= 2 * margin_s + 60


def requeue_self(job_id: str) -> bool:
    """Put this Slurm task back in the queue; True when Slurm took it.

    Slurm then sends this process SIGTERM (already handled: the shard is stopping) and
    holds the task back for about two minutes before it may start again. Nothing run
    from here can shorten that: the job's processes are being ended.
    """
    done = subprocess.run(["scontrol", "requeue", job_id], capture_output=True, text=True, timeout=60,
                          check=False)
    if done.returncode != 0:
        log.error("scontrol requeue %s failed: %s", job_id, (done.stderr or done.stdout).strip())
        return False
    return True


DEFAULT_STOP_GRACE_S = 20.0  # Slurm's default KillWait is 30 s between TERM and KILL


def stop_deadline_s(request: StopRequest, env: Mapping[str, str] = os.environ) -> float:
    """Seconds a stopping shard may take before it exits without the engine step in flight:
    half the signal margin for a time-limit USR2, else OMNIBATCH_STOP_GRACE (20 s)."""
    if request.time_limit:
        margin = float(env.get("OMNIBATCH_SIGNAL_MARGIN", 300))
        return max(10.0, margin / 2)
    return max(1.0, float(env.get("OMNIBATCH_STOP_GRACE", DEFAULT_STOP_GRACE_S)))

"""One attempt at a shard, as the run folder records it.

    with shard_attempt(config) as attempt:
        stats = run_shard(config, should_stop=attempt.should_stop)

An attempt appends to the shard's log `_run/logs/<task>-<shard>.log` (a header
names the attempt, host, pid and Slurm ids), records how it ended in
`_run/attempts/<task>-<shard>.json` (done, stopped, requeued, failed), rewrites the
shard's `_run/errors/<task>-<shard>.jsonl` from its Parquet rows, and stops the
shard on SIGTERM, SIGUSR2 or Ctrl-C (see `signals`). A time-limit signal under
Slurm requeues the task before the process exits.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omnibatch.config import RunConfig
from omnibatch.errors import InputError, Interrupted, OmnibatchError
from omnibatch.run import signals
from omnibatch.run.rundir import RunDir, write_text_atomic

log = logging.getLogger("omnibatch")
_SLURM_VARS = ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_RESTART_COUNT",
               "SLURM_JOB_PARTITION", "SLURMD_NODENAME")
DEFAULT_SIGNAL_MARGIN_S = 300
FILE_ONLY = {"console": False}  # `extra` of a log record the terminal's handler leaves out


@dataclass
class AttemptRecord:
    number: int
    host: str
    pid: int
    started: float
    state: str = "running"  # running | done | stopped | requeued | failed
    ended: float | None = None
    detail: str | None = None
    slurm: dict[str, str] = field(default_factory=dict)


@dataclass
class Attempt:
    config: RunConfig
    record: AttemptRecord
    stop: signals.StopRequest

    def should_stop(self) -> bool:
        return self.stop()


def read_attempts(path: Path) -> list[AttemptRecord]:
    try:
        return [AttemptRecord(**a) for a in json.loads(path.read_text())]
    except (OSError, ValueError, TypeError):
        return []


def shard_parts(folder: Path, shard_index: int) -> list[Path]:
    return sorted(folder.glob(f"part-{shard_index:05d}-*.parquet"))


def wrote_since(folder: Path, shard_index: int, since: float) -> bool:
    """Whether the shard wrote a part since `since` (an epoch time)."""
    return any(p.stat().st_mtime >= since for p in shard_parts(folder, shard_index))


def write_errors(rundir: RunDir, config: RunConfig) -> int:
    """Rewrite the shard's errors JSONL from its Parquet rows; return how many failed items it lists."""
    import pyarrow.parquet as pq

    from omnibatch.output.parquet import parts_of_run

    failed: dict[str, dict[str, Any]] = {}
    parts = shard_parts(rundir.table_dir(config.task), config.shard_index)
    for part in parts_of_run(parts, config.fingerprint()):
        for row in pq.read_table(part, columns=["id", "path", "status", "error"]).to_pylist():
            failed.pop(row["id"], None)  # a later part supersedes an earlier row of the same id
            if row["status"] == "error":
                failed[row["id"]] = {"id": row["id"], "path": row["path"], "error": row["error"]}
    path = rundir.errors_path(config.task, config.shard_label)
    if failed or path.exists():
        write_text_atomic(path, "".join(json.dumps(f) + "\n" for f in failed.values()))
    return len(failed)


@contextmanager
def shard_attempt(config: RunConfig) -> Iterator[Attempt]:
    rundir = RunDir(config.out_dir)
    rundir.check_writable()  # before the attempt record is the first thing written there
    task, label = config.task, config.shard_label
    history_path = rundir.attempts_path(task, label)
    history = read_attempts(history_path)
    slurm_ids = {k: os.environ[k] for k in _SLURM_VARS if k in os.environ}
    record = AttemptRecord(number=len(history) + 1, host=socket.gethostname(), pid=os.getpid(),
                           started=time.time(), slurm=slurm_ids)
    history.append(record)

    def save() -> None:
        write_text_atomic(history_path, json.dumps([asdict(a) for a in history], indent=1) + "\n")

    save()
    ending = threading.Lock()  # the main thread or the stop deadline ends the attempt, not both
    requeue_as: str | None = None

    def end_attempt() -> None:
        record.ended = time.time()
        if record.state == "refused":
            if history:
                save()
            else:
                history_path.unlink(missing_ok=True)
            return
        try:
            write_errors(rundir, config)
        except Exception as exc:  # noqa: BLE001 - a convenience file; the Parquet rows are the record
            log.error("could not write %s: %s", rundir.errors_path(task, label), exc)
        save()  # before a requeue: Slurm ends this process soon after
        if requeue_as:
            progressed = wrote_since(rundir.table_dir(task), config.shard_index, record.started)
            _requeue(record, requeue_as, progressed=progressed)
            save()
        log.info("=== attempt %d %s after %.1f s", record.number, record.state, record.ended - record.started)

    def past_deadline(stop: signals.StopRequest, deadline_s: float) -> None:
        nonlocal requeue_as
        if not ending.acquire(blocking=False):
            return  # the main thread is already ending the attempt
        record.state = "stopped"
        record.detail = (f"{stop.name}: the engine step in flight did not end within {deadline_s:.0f} s of the "
                         "signal; exited without it (rows committed before are kept, the rest are redone)")
        log.warning(record.detail)
        if stop.time_limit:
            requeue_as = signals.slurm_job_id()
        try:
            end_attempt()
        finally:
            logging.shutdown()
            os._exit(3)

    def on_stop(stop: signals.StopRequest) -> None:
        deadline_s = signals.stop_deadline_s(stop)
        timer = threading.Timer(deadline_s, past_deadline, args=(stop, deadline_s))
        timer.daemon = True
        timer.start()

    with _shard_log(rundir.log_path(task, label)), signals.stop_on_signals(on_stop=on_stop) as stop:
        slurm = " ".join(f"{k}={v}" for k, v in record.slurm.items())
        log.info("=== attempt %d of %s %s on %s pid %d%s", record.number, task, label, record.host,
                 record.pid, f" ({slurm})" if slurm else "")
        attempt = Attempt(config, record, stop)
        try:
            yield attempt
        except Interrupted as exc:
            ending.acquire()
            record.state, record.detail = "stopped", f"{stop.name}: {exc}"
            if stop.time_limit:
                requeue_as = signals.slurm_job_id()
            raise
        except InputError as exc:
            # Refused before any work (its inputs, its folder): not an attempt of the shard. It leaves
            # no record, so `status` never lists a refused run as a failed shard.
            ending.acquire()
            history.remove(record)
            record.state, record.detail = "refused", str(exc)
            log.info("refused: %s", exc, extra=FILE_ONLY)
            raise
        except BaseException as exc:
            ending.acquire()
            record.state, record.detail = "failed", f"{type(exc).__name__}: {exc}"
            # For the log file: the terminal gets the CLI's own report of it (cli.options.setup_logging).
            log.error("attempt %d failed: %s", record.number, record.detail, extra=FILE_ONLY,
                      exc_info=None if isinstance(exc, OmnibatchError | KeyboardInterrupt | SystemExit) else exc)
            raise
        else:
            ending.acquire()
            record.state = "done"
        finally:
            end_attempt()


def _requeue(record: AttemptRecord, job: str, *, progressed: bool) -> None:
    margin = float(os.environ.get("OMNIBATCH_SIGNAL_MARGIN", DEFAULT_SIGNAL_MARGIN_S))
    timed_out = signals.near_time_limit(job, margin)
    if timed_out and not progressed:
        record.detail = (f"time limit reached before attempt {record.number} finished a single item; not "
                         "requeued, it would time out again: submit again with a longer --time")
        log.error(record.detail)
        return
    if signals.requeue_self(job):
        record.state = "requeued"
        log.warning("%s: requeued Slurm task %s; the next attempt resumes after the last written row",
                    "time limit near" if timed_out else "preempted", job)


@contextmanager
def _shard_log(path: Path) -> Iterator[None]:
    """Send omnibatch's log records, INFO and up, to the shard's log file for the attempt.

    Console handlers keep the level the person asked for: the file wants more detail.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    logger, root = logging.getLogger("omnibatch"), logging.getLogger()
    quiet = {h: h.level for h in root.handlers + logger.handlers if h.level == logging.NOTSET}
    for h in quiet:
        h.setLevel(root.getEffectiveLevel() if h in root.handlers else logging.WARNING)
    saved_level = logger.level
    logger.setLevel(min(logger.getEffectiveLevel(), logging.INFO))
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()
        logger.setLevel(saved_level)
        for h, level in quiet.items():
            h.setLevel(level)

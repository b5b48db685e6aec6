"""Stop requests, Slurm ids and durations, and how status reads attempt records (no engine needed)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from omnibatch.config import RunConfig
from omnibatch.run.attempt import AttemptRecord
from omnibatch.run.rundir import RunDir, write_text_atomic
from omnibatch.run.signals import parse_slurm_duration, slurm_job_id, stop_on_signals
from omnibatch.run.status import format_status, read_status


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR2, signal.SIGINT])
def test_a_stop_signal_sets_the_request_and_handlers_are_restored(signum):
    before = signal.getsignal(signum)
    with stop_on_signals() as stop:
        assert not stop()
        os.kill(os.getpid(), signum)
        time.sleep(0.05)
        assert stop() and stop.signum == signum and stop.time_limit == (signum == signal.SIGUSR2)
        os.kill(os.getpid(), signal.SIGTERM if signum != signal.SIGTERM else signal.SIGUSR2)
        time.sleep(0.05)
        assert stop.signum == signum  # the first signal is the reason
    assert signal.getsignal(signum) == before


def test_a_second_ctrl_c_stops_at_once():
    with stop_on_signals() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        assert stop.signum == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)


def test_slurm_job_ids_name_the_array_task():
    in_array = {"SLURM_JOB_ID": "107", "SLURM_ARRAY_JOB_ID": "100", "SLURM_ARRAY_TASK_ID": "7"}
    assert slurm_job_id(in_array) == "100_7"
    assert slurm_job_id({"SLURM_JOB_ID": "55"}) == "55"
    assert slurm_job_id({}) is None


@pytest.mark.parametrize("text,seconds", [("4:50", 290.0), ("1:02:03", 3723.0), ("2-00:00:10", 172810.0),
                                          ("45", 45.0), ("UNLIMITED", None), ("", None), ("1:2:3:4", None)])
def test_slurm_durations_parse(text, seconds):
    assert parse_slurm_duration(text) == seconds


def write_attempts(rundir: RunDir, label: str, records: list[AttemptRecord]) -> None:
    import json
    from dataclasses import asdict

    write_text_atomic(rundir.attempts_path("transcribe", label), json.dumps([asdict(r) for r in records]))


def test_status_tells_running_from_dead_and_pending(tmp_path):
    rundir = RunDir(tmp_path)
    config = RunConfig(task="transcribe", inputs=[str(tmp_path / "none.jsonl")], out=str(tmp_path),
                       num_shards=4)
    rundir.prepare(config)
    host = socket.gethostname()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    write_attempts(rundir, "00000-of-00004", [AttemptRecord(1, host, os.getpid(), time.time() - 5)])
    write_attempts(rundir, "00001-of-00004", [AttemptRecord(1, host, int(dead), time.time() - 5)])
    write_attempts(rundir, "00002-of-00004", [AttemptRecord(1, host, 1, time.time() - 9, state="done",
                                                            ended=time.time() - 1)])
    rundir.mark_complete("transcribe", "00002-of-00004", {"fingerprint": config.fingerprint()})
    run = read_status(tmp_path)
    states = [s.state for s in run.tasks[0].shards]
    assert states == ["running", "failed", "done", "pending"]
    assert run.exit_code() == 3 and run.tasks[0].items_total is None  # its manifest is gone: still reports
    text = format_status(run)
    assert "1 done, 1 running, 1 failed, 1 pending" in text and f"process {dead}" in text


def test_status_refuses_a_folder_without_a_run(tmp_path):
    from omnibatch.errors import InputError

    with pytest.raises(InputError, match="no omnibatch run"):
        read_status(tmp_path)

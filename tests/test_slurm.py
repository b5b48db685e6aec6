"""`omnibatch submit` on a real single-node Slurm cluster (tests/slurm_cluster.py).

The same spoken manifest goes through a local single process and through a
3-task job array; the rows must match. Then tasks are cancelled, requeued and
told their time is up while they run, and every item must still appear once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from omnibatch.run.attempt import read_attempts
from omnibatch.run.rundir import RunDir
from omnibatch.run.slurm_script import SlurmOptions
from omnibatch.run.submit import read_jobs, submit_run
from tests._scaleout_media import (
    MISSING_ID,
    make_speech_manifest,
    omnibatch_cmd,
    read_rows,
    start_shard,
    tiny_config,
    wait_for,
    run_reference,
)
from tests.slurm_cluster import slurm_cluster  # noqa: F401 - the session fixture

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
ITEMS = 30  # ten per shard: a shard runs long enough to be caught in the middle


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return make_speech_manifest(tmp_path_factory.mktemp("speech"), ITEMS)


@pytest.fixture(scope="module")
def reference(manifest, tmp_path_factory):
    done, rows = run_reference(manifest, tmp_path_factory.mktemp("local"))
    assert done.returncode == 1, done.stderr
    return rows


def freeze_mid_run(out: Path, shards: list[int], timeout: float = 180) -> dict[int, int]:
    """Freeze (SIGSTOP) each shard once it has written its first rows; return shard -> pid.

    The shards are fast (the tiny model) and run side by side: between seeing a shard's
    first rows and Slurm delivering a signal to it, it could write all of them and exit
    done, and then there is nothing to stop. Frozen, it holds still until it is signalled.
    """
    frozen: dict[int, int] = {}

    def freeze_ready() -> bool:
        for index in shards:
            if index not in frozen and shard_rows(out, index) >= 2:
                label = f"{index:05d}-of-00003"
                frozen[index] = read_attempts(RunDir(out).attempts_path("transcribe", label))[-1].pid
                os.kill(frozen[index], signal.SIGSTOP)
        return len(frozen) == len(shards)

    wait_for(freeze_ready, timeout, f"shards {shards} to write their first rows", interval=0.05)
    for index, pid in frozen.items():
        wait_for(lambda: _proc_field(pid, "State").startswith("T"), 30, f"shard {index} to freeze")
    return frozen


def signal_and_thaw(pid: int, send) -> None:
    """`send()` a stop signal to a frozen shard, wait until it is pending, and let the shard go on:
    it handles the signal before anything else runs."""
    try:
        send()
        # Pending, or already handled: Slurm continues a job it cancels (SIGCONT, then SIGTERM).
        wait_for(lambda: _pending(pid) & _STOPPING or not _proc_field(pid, "State").startswith("T"), 60,
                 f"the signal to reach pid {pid}")
    finally:
        os.kill(pid, signal.SIGCONT)


_STOPPING = (1 << (signal.SIGTERM - 1)) | (1 << (signal.SIGUSR2 - 1))


def _proc_field(pid: int, name: str) -> str:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:  # it has exited
        return ""
    for line in status.splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":", 1)[1].strip()
    return ""


def _pending(pid: int) -> int:
    """Signals pending for the process (shared) or its main thread, as a bit mask."""
    return int(_proc_field(pid, "ShdPnd") or "0", 16) | int(_proc_field(pid, "SigPnd") or "0", 16)


def shard_rows(out: Path, index: int) -> int:
    total = 0
    for part in (out / "transcribe").glob(f"part-{index:05d}-*.parquet"):
        try:
            total += pq.read_metadata(part).num_rows
        except (OSError, ValueError):
            pass
    return total


def wait_job(cluster, job: str, timeout: float = 600) -> None:
    cluster.wait_gone(job, timeout)


def test_array_job_writes_what_a_local_run_writes(slurm_cluster, manifest, reference, tmp_path):
    out = tmp_path / "out"
    submit = [*omnibatch_cmd("submit", "transcribe", str(manifest), "--out", str(out), "--array", "3",
                             "--cpus-per-task", "1", "--time", "20:00", "--engine", "transformers",
                             "--max-new-tokens", "6", "-E", "batch_size=1", "--formats", "parquet")]
    done = subprocess.run(submit, capture_output=True, text=True, timeout=300, env=slurm_cluster.env)
    assert done.returncode == 0, done.stderr
    job = done.stdout.strip()
    assert job.isdigit(), done.stdout
    summary_job = read_jobs(RunDir(out))[0]["summary_job"]
    wait_job(slurm_cluster, job)
    wait_job(slurm_cluster, summary_job, 120)

    assert read_rows(out) == reference, slurm_cluster.logs()
    rundir = RunDir(out)
    labels = [f"{i:05d}-of-00003" for i in range(3)]
    assert all(rundir.is_complete("transcribe", label) for label in labels)
    for i, label in enumerate(labels):
        log = rundir.log_path("transcribe", label).read_text()
        assert f"SLURM_ARRAY_JOB_ID={job}" in log and f"SLURM_ARRAY_TASK_ID={i}" in log
        assert (rundir.slurm_dir / f"omnibatch-transcribe-{job}_{i}.out").exists()
    items = [json.loads(rundir.stats_path("transcribe", label).read_text())["items"] for label in labels]
    assert sum(items) == ITEMS + 1 and min(items) >= 8
    summary = json.loads((rundir.meta / "summary.json").read_text())
    assert [s["state"] for s in summary["tasks"][0]["shards"]] == ["done"] * 3
    assert summary["tasks"][0]["ok"] == ITEMS and summary["exit_code"] == 1

    again = subprocess.run(submit, capture_output=True, text=True, timeout=300, env=slurm_cluster.env)
    assert again.returncode == 0 and again.stdout == "" and "nothing to submit" in again.stderr
    assert len(read_jobs(rundir)) == 1


def requeue_now(cluster, task_job: str, timeout: float = 60) -> None:
    """Make a requeued task start again at once (Slurm holds requeued jobs back ~2 minutes)."""
    wait_for(lambda: cluster.state(task_job) == "PENDING", timeout, f"{task_job} to be pending")
    cluster.run("scontrol", "update", f"JobId={task_job}", "StartTime=now")


def test_cancelled_requeued_and_timed_out_tasks_resume_to_each_item_once(slurm_cluster, manifest, reference,
                                                                         tmp_path):
    out = tmp_path / "out"
    config = tiny_config(manifest, out)  # small parts: progress lands in many small steps
    # A 60 s margin: a shard told its time is near must have requeued itself within half of it
    # (signals.stop_deadline_s), however long its engine step in flight.
    started = submit_run(config, SlurmOptions(num_shards=3, cpus_per_task=1, time="20:00", max_parallel=2,
                                              signal_margin_s=60))
    job = started.array_job
    assert started.shards == [0, 1, 2] and job

    pids = freeze_mid_run(out, [0, 1])
    # Shard 0: cancelled mid-run (SIGTERM, as preemption does), then requeued by hand.
    signal_and_thaw(pids[0], lambda: slurm_cluster.run("scancel", f"{job}_0"))
    # Shard 1: told its time limit is near (the USR2 that --signal=B:USR2@margin sends); it requeues itself.
    signal_and_thaw(pids[1], lambda: slurm_cluster.run("scancel", "--signal=USR2", "--batch", f"{job}_1"))

    wait_for(lambda: not any(line.startswith(f"{job}_0 ") for line in slurm_cluster.queued(job)), 120,
             "shard 0 to end")
    rows_0 = shard_rows(out, 0)
    assert slurm_cluster.state(f"{job}_0") == "CANCELLED"
    slurm_cluster.run("scontrol", "requeue", f"{job}_0")
    requeue_now(slurm_cluster, f"{job}_0")
    # Nobody but the shard itself requeued it, within its 30 s deadline of the signal (the rest is
    # Slurm: the TERM a requeue sends, the job's clean-up).
    requeue_now(slurm_cluster, f"{job}_1", timeout=120)

    wait_job(slurm_cluster, job)
    wait_job(slurm_cluster, started.summary_job, 120)
    assert read_rows(out) == reference, slurm_cluster.logs()

    rundir = RunDir(out)
    history = [read_attempts(rundir.attempts_path("transcribe", f"{i:05d}-of-00003")) for i in range(3)]
    assert [a.state for a in history[0]] == ["stopped", "done"]
    assert history[0][0].detail.startswith("SIGTERM")
    assert [a.state for a in history[1]] == ["requeued", "done"]
    assert history[1][1].slurm["SLURM_RESTART_COUNT"] == "1"
    assert [a.state for a in history[2]] == ["done"]
    assert 2 <= rows_0 < json.loads(rundir.stats_path("transcribe", "00000-of-00003").read_text())["items"]
    stats_0 = json.loads(rundir.stats_path("transcribe", "00000-of-00003").read_text())
    assert stats_0["skipped_done"] == rows_0  # the second attempt redid nothing
    output_1 = (rundir.slurm_dir / f"omnibatch-transcribe-{job}_1.out").read_text()
    assert "got SIGUSR2" in output_1
    assert output_1.count("omnibatch: shard 1/3") == 2  # appended across the requeue, not truncated
    summary = json.loads((rundir.meta / "summary.json").read_text())
    assert [s["state"] for s in summary["tasks"][0]["shards"]] == ["done"] * 3
    assert {f["id"] for f in summary["tasks"][0]["failed"]} == {MISSING_ID}

    status = subprocess.run(omnibatch_cmd("status", str(out)), capture_output=True, text=True, timeout=120)
    assert status.returncode == 1 and "3 done" in status.stdout


def test_resubmit_runs_only_unfinished_shards(slurm_cluster, manifest, tmp_path):
    out = tmp_path / "out"
    config = tiny_config(manifest, out)
    options = SlurmOptions(num_shards=4, cpus_per_task=1, time="20:00")
    # Shards 0 and 2 ran earlier (here: locally, with the same config file).
    first = submit_run(config, options, dry_run=True)
    assert first.shards == [0, 1, 2, 3]
    ran = [start_shard(RunDir(out).config_path("transcribe"), shard) for shard in ("0/4", "2/4")]
    assert all(proc.wait(timeout=300) in (0, 1) for proc in ran)  # 1: the shard holding the missing file
    started = submit_run(config, options)
    assert started.shards == [1, 3]
    assert "#SBATCH --array=1,3\n" in started.script.read_text()
    with pytest.raises(Exception, match="queued or running"):
        submit_run(config, options)  # the earlier submission still holds tasks
    wait_job(slurm_cluster, started.array_job)
    wait_job(slurm_cluster, started.summary_job, 120)
    rows = read_rows(out)
    assert len(rows) == ITEMS + 1
    assert submit_run(config, options).shards == []

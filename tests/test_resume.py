"""A killed or stopped run resumes to exactly what an uninterrupted run writes, each item once.

Real processes (`omnibatch run-shard`), real espeak-ng speech, the embedded tiny
Qwen3-Omni on the transformers engine; small parts so that a run
writes many parts and can be caught in the middle.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pyarrow.parquet as pq
import pytest

from omnibatch.run.attempt import read_attempts
from omnibatch.run.local import run_local_parallel
from omnibatch.run.rundir import RunDir
from tests._scaleout_media import (
    MISSING_ID,
    make_speech_manifest,
    omnibatch_cmd,
    read_rows,
    row_count,
    run_reference,
    run_shard_to_end,
    start_shard,
    tiny_config,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.slow
ITEMS = 16
LABEL = "00000-of-00001"


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return make_speech_manifest(tmp_path_factory.mktemp("speech"), ITEMS)


@pytest.fixture(scope="module")
def reference(manifest, tmp_path_factory):
    """The rows of one uninterrupted run."""
    done, rows = run_reference(manifest, tmp_path_factory.mktemp("reference"))
    assert done.returncode == 1, done.stderr  # 1: the missing file failed, everything else ran
    assert len(rows) == ITEMS + 1 and rows[MISSING_ID][0] == "error"
    assert sum(1 for status, _, _ in rows.values() if status == "ok") == ITEMS
    assert len({text for _, text, _ in rows.values()}) >= 3  # texts differ between items
    assert len({d for *_, d in rows.values()}) == ITEMS + 1  # and so do durations
    return rows


def interrupt_midway(config_file, out, signum: int, *, whole_group: bool) -> tuple[subprocess.Popen, int]:
    proc = start_shard(config_file, log=out.parent / "first-attempt.log")
    try:
        wait_for(lambda: row_count(out) >= 2 or proc.poll() is not None, 120, "the first rows")
        assert proc.poll() is None, "the run ended before it could be interrupted"
        if whole_group:  # as Slurm does: every process of the task, decode workers and ffmpeg included
            os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc, row_count(out)


def test_sigkill_midway_then_rerun_writes_the_same_rows_once(manifest, reference, tmp_path):
    out = tmp_path / "out"
    config_file = write_config(tiny_config(manifest, out), tmp_path / "config.json")
    proc, written = interrupt_midway(config_file, out, signal.SIGKILL, whole_group=True)
    assert proc.returncode == -signal.SIGKILL
    assert 0 < written < ITEMS + 1, f"killed with {written} rows written: not midway"
    assert not RunDir(out).is_complete("transcribe", LABEL)

    again = run_shard_to_end(config_file)
    assert again.returncode == 1, again.stderr
    assert read_rows(out) == reference
    assert RunDir(out).is_complete("transcribe", LABEL)
    stats = json.loads(RunDir(out).stats_path("transcribe", LABEL).read_text())
    assert stats["skipped_done"] == written and stats["ok"] + stats["error"] == ITEMS + 1 - written


def test_sigterm_stops_cleanly_and_the_rerun_resumes(manifest, reference, tmp_path):
    out = tmp_path / "out"
    config_file = write_config(tiny_config(manifest, out), tmp_path / "config.json")
    proc, written = interrupt_midway(config_file, out, signal.SIGTERM, whole_group=True)
    assert proc.returncode == 3, (out.parent / "first-attempt.log").read_text()  # interrupted: rerun resumes
    assert 0 < written < ITEMS + 1
    first_log = (out.parent / "first-attempt.log").read_text()
    assert "got SIGTERM, stopping: writing the finished files" in first_log and "Traceback" not in first_log
    # What the signal cut short (a killed ffmpeg, a decode worker) was not recorded as a failure.
    assert {i for i, (status, *_) in read_rows(out).items() if status == "error"} <= {MISSING_ID}
    status = subprocess.run(omnibatch_cmd("status", str(out)), capture_output=True, text=True, timeout=120)
    assert status.returncode == 3 and "1 stopped" in status.stdout, status.stdout

    again = run_shard_to_end(config_file)
    assert again.returncode == 1, again.stderr
    assert read_rows(out) == reference
    rundir = RunDir(out)
    attempts = read_attempts(rundir.attempts_path("transcribe", LABEL))
    assert [a.state for a in attempts] == ["stopped", "done"]
    assert attempts[0].detail.startswith("SIGTERM")
    log = rundir.log_path("transcribe", LABEL).read_text()
    assert "=== attempt 1 of transcribe" in log and "=== attempt 2 of transcribe" in log
    errors = [json.loads(line) for line in rundir.errors_path("transcribe", LABEL).read_text().splitlines()]
    assert [e["id"] for e in errors] == [MISSING_ID] and "not-there.wav" in errors[0]["error"]

    status = subprocess.run(omnibatch_cmd("status", str(out), "--write"), capture_output=True, text=True,
                            timeout=120)
    assert status.returncode == 1, status.stdout  # all done, one item failed
    assert f"{ITEMS + 1} of {ITEMS + 1} written: {ITEMS} ok, 1 failed" in status.stdout
    summary = json.loads((out / "_run" / "summary.json").read_text())
    assert summary["tasks"][0]["ok"] == ITEMS and summary["tasks"][0]["shards"][0]["state"] == "done"


def test_local_parallel_shards_write_what_one_process_writes(manifest, reference, tmp_path):
    out = tmp_path / "out"
    code = run_local_parallel(tiny_config(manifest, out), 2)
    assert code == 1
    assert read_rows(out) == reference
    rundir = RunDir(out)
    labels = ["00000-of-00002", "00001-of-00002"]
    assert all(rundir.is_complete("transcribe", label) for label in labels)
    counts = [json.loads(rundir.stats_path("transcribe", label).read_text())["items"] for label in labels]
    assert sum(counts) == ITEMS + 1 and min(counts) >= 4  # balanced by duration, not all on one side
    assert run_local_parallel(tiny_config(manifest, out), 2) == 1  # nothing left to do; one item failed


def test_sigkill_at_random_moments_then_rerun_writes_each_item_once(manifest, reference, tmp_path):
    """Killed at several random moments (start-up, the folder lock, mid-commit, the engine), rerun
    after each: the end state equals one uninterrupted run, every item once."""
    import random
    import time

    seed = int(time.time())
    rng = random.Random(seed)
    out = tmp_path / "out"
    config_file = write_config(tiny_config(manifest, out), tmp_path / "config.json")
    moments = sorted(rng.uniform(0.5, 12.0) for _ in range(4))
    for delay in moments:
        proc = start_shard(config_file, log=tmp_path / "killed.log")
        time.sleep(delay)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        read_rows(out)  # never a duplicate, at any moment
    again = run_shard_to_end(config_file)
    assert again.returncode == 1, (seed, again.stderr)
    assert read_rows(out) == reference, f"seed {seed}, kills at {moments}"
    keys = [(r["id"], r["index"]) for part in sorted((out / "segments").glob("part-*.parquet"))
            for r in pq.read_table(part, columns=["id", "index"]).to_pylist()]
    assert len(keys) == len(set(keys)), f"seed {seed}: a segment written twice"

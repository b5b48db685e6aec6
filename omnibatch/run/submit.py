"""`omnibatch submit`: a run folder's unfinished shards as a Slurm job array, plus a summary step.

    DIR/_run/config-<task>.json         what every array task runs (plain JSON)
    DIR/_run/slurm/<task>-<n>.sbatch    the array script of the n-th submission, readable
    DIR/_run/slurm/<task>-<n>-summary.sbatch
    DIR/_run/slurm/jobs.jsonl           one line per submission: job ids, shards
    DIR/_run/slurm/*.out                Slurm's output files, appended across requeues

Submitting again to the same folder submits only the shards without a completion
marker, and refuses while an earlier submission still has tasks in the queue
(two attempts at one shard at once would write the same rows twice).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from omnibatch.config import RunConfig
from omnibatch.errors import InputError, OmnibatchError
from omnibatch.run.rundir import RunDir, write_text_atomic
from omnibatch.run.slurm_script import SlurmOptions, render_array_script, render_summary_script


@dataclass
class Submission:
    task: str
    num_shards: int
    shards: list[int]  # the shards submitted: those without a completion marker
    array_job: str | None = None  # None: nothing submitted (dry run, or every shard done)
    summary_job: str | None = None
    script: Path | None = None
    summary_script: Path | None = None


def omnibatch_command() -> list[str]:
    """How a compute node runs this omnibatch: the same interpreter (a shared file system is assumed)."""
    return [sys.executable, "-m", "omnibatch"]


def unfinished_shards(rundir: RunDir, task: str, num_shards: int) -> list[int]:
    probe = RunConfig(task=task, inputs=[], out=str(rundir.root))  # type: ignore[arg-type]
    return [i for i in range(num_shards)
            if not rundir.is_complete(task, probe.with_shard(i, num_shards).shard_label)]


def read_jobs(rundir: RunDir) -> list[dict]:
    path = rundir.slurm_dir / "jobs.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def queued_jobs(rundir: RunDir, task: str) -> list[str]:
    """Earlier array jobs of this folder and task that still have tasks pending or running."""
    found = []
    for job in read_jobs(rundir):
        if job.get("task") != task or not job.get("array_job"):
            continue
        done = subprocess.run(["squeue", "-h", "-j", str(job["array_job"]), "-o", "%i"], capture_output=True,
                              text=True, timeout=60, check=False)
        if done.returncode == 0 and done.stdout.strip():  # an unknown (long finished) job id fails
            found.append(str(job["array_job"]))
    return found


def absolute_config(config: RunConfig) -> RunConfig:
    """Paths as a compute node, started in another folder, must see them."""
    return replace(config, out=os.path.abspath(config.out),
                   inputs=[os.path.abspath(p) if os.path.exists(p) else p for p in config.inputs])


def submit_run(config: RunConfig, options: SlurmOptions, *, dry_run: bool = False,
               omnibatch: Sequence[str] | None = None) -> Submission:
    """Write the config, render the scripts and (unless `dry_run`) submit them with sbatch."""
    from omnibatch.manifests import read_inputs
    from omnibatch.run.durations import item_durations

    if not config.resume:
        raise InputError("--no-resume does not go with submit: every requeued attempt of a shard would "
                         "start over. To redo a run, submit to a new --out folder (or delete the old "
                         "outputs first).")
    omnibatch = list(omnibatch or omnibatch_command())
    n = options.num_shards
    config = absolute_config(config).with_shard(0, n)
    rundir = RunDir(config.out_dir)
    if not dry_run:
        _require_tools("sbatch", "squeue")
        if busy := queued_jobs(rundir, config.task):
            raise InputError(f"{rundir.root} already has {config.task} shards queued or running in Slurm "
                             f"job(s) {', '.join(busy)}; wait for them to end (omnibatch status "
                             f"{rundir.root}) or scancel them, then submit again")
    # Refuse a bad manifest here, not in every task; a rerun never reads its own outputs.
    items = read_inputs(config.inputs, exclude=[config.out_dir]).items
    rundir.prepare(config)
    if n > 1:
        from omnibatch.run.progress import probing_bar

        with probing_bar("probing durations to balance shards") as progress:
            item_durations(items, rundir.root, progress=progress)  # probed once here, read by every shard
    shards = unfinished_shards(rundir, config.task, n)
    submission = Submission(task=config.task, num_shards=n, shards=shards)
    if not shards:
        return submission
    number = len(read_jobs(rundir)) + 1
    stem = rundir.slurm_dir / f"{config.task}-{number:03d}"
    script = stem.with_suffix(".sbatch")
    write_text_atomic(script, render_array_script(task=config.task, out=rundir.root,
                                                  config=rundir.config_path(config.task), shards=shards,
                                                  options=options, omnibatch=omnibatch))
    submission.script = script
    if dry_run:
        return submission
    submission.array_job = sbatch([], script)
    summary = stem.with_name(stem.name + "-summary.sbatch")
    write_text_atomic(summary, render_summary_script(task=config.task, out=rundir.root,
                                                     array_job=submission.array_job, options=options,
                                                     omnibatch=omnibatch))
    submission.summary_script = summary
    submission.summary_job = sbatch([f"--dependency=afterany:{submission.array_job}",
                                     "--kill-on-invalid-dep=yes"], summary)
    record = {"task": config.task, "num_shards": n, "shards": shards, "array_job": submission.array_job,
              "summary_job": submission.summary_job, "submitted": time.time(), "script": str(script),
              "summary_script": str(summary)}
    with open(rundir.slurm_dir / "jobs.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
    return submission


def sbatch(args: Sequence[str], script: Path) -> str:
    """Submit `script`; return the job id."""
    done = subprocess.run(["sbatch", "--parsable", *args, str(script)], capture_output=True, text=True,
                          timeout=300, check=False)
    if done.returncode != 0:
        raise OmnibatchError(f"sbatch refused {script}: {(done.stderr or done.stdout).strip()}\n"
                             "Fix the Slurm options (the script is readable there) and submit again.")
    return done.stdout.strip().split(";")[0]  # --parsable prints "id" or "id;cluster"


def _require_tools(*names: str) -> None:
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        raise OmnibatchError(f"{' and '.join(missing)} not found: `omnibatch submit` runs where Slurm's "
                             "commands are (a login node); use --dry-run to only render the script")

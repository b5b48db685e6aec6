"""N shards on this machine, one process each: the Slurm contract without Slurm.

Each worker is `omnibatch run-shard DIR/_run/config-<task>.json --shard I/N`, the
very command an array task runs, so a run started here can be finished on a
cluster and the other way round. Worker I sees one GPU (CUDA_VISIBLE_DEVICES);
its output goes to `_run/logs/<task>-<shard>.out`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from omnibatch.config import RunConfig
from omnibatch.run.rundir import RunDir
from omnibatch.run.submit import absolute_config, omnibatch_command, unfinished_shards


def worker_env(index: int, count: int, base: Mapping[str, str] = os.environ) -> dict[str, str]:
    """Worker `index` gets one GPU: the index-th of CUDA_VISIBLE_DEVICES when set, else GPU `index`;
    and a fair share of the CPU cores for its math libraries, unless already chosen."""
    env = dict(base)
    visible = [d for d in base.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    env["CUDA_VISIBLE_DEVICES"] = visible[index % len(visible)] if visible else str(index)
    from omnibatch.resources import usable_cpus

    share = str(max(1, usable_cpus() // count))
    env.setdefault("OMP_NUM_THREADS", share)
    env.setdefault("OMNIBATCH_CPUS", share)  # auto-sized decode workers take this shard's share only
    return env


def worker_exit_code(codes: Sequence[int]) -> int:
    """0 all ok; 1 some item failed; else the first other failure (3: interrupted or engine failed)."""
    bad = [c for c in codes if c not in (0, 1)]
    if bad:
        return 3 if any(c < 0 for c in bad) else bad[0]
    return 1 if 1 in codes else 0


def run_local_parallel(config: RunConfig, count: int, *, omnibatch: Sequence[str] | None = None) -> int:
    """Run every unfinished shard of `count` at once, one process each; return the exit code.

    SIGTERM or Ctrl-C here is passed on: each worker writes its finished files and stops, and a
    rerun resumes them all.
    """
    from omnibatch.manifests import read_inputs
    from omnibatch.run.durations import item_durations

    config = absolute_config(config).with_shard(0, count)
    rundir = RunDir(config.out_dir)
    items = read_inputs(config.inputs).items
    rundir.prepare(config)
    if count > 1:
        item_durations(items, rundir.root)  # probed once here, not in every worker
    command = list(omnibatch or omnibatch_command())
    procs: dict[int, subprocess.Popen] = {}
    outputs = []
    for i in unfinished_shards(rundir, config.task, count):
        out_path = shard_output(rundir, config, i)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out = open(out_path, "ab")
        outputs.append(out)
        procs[i] = subprocess.Popen(
            [*command, "run-shard", str(rundir.config_path(config.task)), "--shard", f"{i}/{count}"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=worker_env(i, count))
    if not procs:
        from omnibatch.run.status import read_status

        print(f"all {count} shards of {rundir.root} are already done", file=sys.stderr)
        return read_status(rundir.root).exit_code()

    def forward(signum: int, frame: object) -> None:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)

    # Ctrl-C reaches the workers from the terminal too; passing it on covers a `kill -INT` of this process.
    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGUSR2, signal.SIGINT)}
    codes: dict[int, int] = {}
    try:
        while len(codes) < len(procs):
            for i, p in procs.items():
                if i not in codes and (code := p.poll()) is not None:
                    codes[i] = code
                    print(f"shard {i}/{count} ended with exit code {code} (output: "
                          f"{shard_output(rundir, config, i)})", file=sys.stderr)
            time.sleep(0.2)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        for out in outputs:
            out.close()
    from omnibatch.run.status import format_status, read_status

    print(format_status(read_status(rundir.root)), file=sys.stderr)
    return worker_exit_code(list(codes.values()))


def shard_output(rundir: RunDir, config: RunConfig, index: int) -> Path:
    label = config.with_shard(index, config.num_shards).shard_label
    return rundir.log_path(config.task, label).with_suffix(".out")

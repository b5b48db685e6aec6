"""N shards on this machine, one process each: the Slurm contract without Slurm.

Each worker is `omnibatch run-shard DIR/_run/config-<task>.json --shard I/N`, the
very command an array task runs, so a run started here can be finished on a
cluster and the other way round. Worker I sees the GPUs its engine asks for
(CUDA_VISIBLE_DEVICES): one, or `tensor_parallel_size` consecutive ones (vLLM
`-E tensor_parallel_size=2` gives each worker two); its output goes to
`_run/logs/<task>-<shard>.out`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from omnibatch.config import RunConfig
from omnibatch.errors import InputError
from omnibatch.run.rundir import RunDir
from omnibatch.run.submit import absolute_config, omnibatch_command, unfinished_shards


def gpus_per_worker(config: RunConfig) -> int:
    """How many GPUs one worker's engine asks for: vLLM's tensor_parallel_size (from -E or its config
    file), else one."""
    options = dict(config.engine_options)
    if options.get("config") and "tensor_parallel_size" not in options:
        from omnibatch.engine.vllm_options import read_config_file

        options = {**read_config_file(str(options["config"])), **options}
    size = options.get("tensor_parallel_size", 1)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise InputError(f"tensor_parallel_size must be a positive integer, got {size!r}")
    return size


def visible_gpus(base: Mapping[str, str] = os.environ) -> list[str] | None:
    """The GPUs this process may hand out: CUDA_VISIBLE_DEVICES when set, else those nvidia-smi lists;
    None when neither says (no NVIDIA driver here)."""
    if "CUDA_VISIBLE_DEVICES" in base:
        return [d.strip() for d in base["CUDA_VISIBLE_DEVICES"].split(",") if d.strip()]
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        listed = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    count = sum(1 for line in listed.splitlines() if line.startswith("GPU "))
    return [str(i) for i in range(count)] if count else None


def plan_gpus(count: int, per_worker: int, visible: list[str] | None) -> list[list[str]]:
    """The GPUs of each of `count` workers, `per_worker` consecutive ones each (pure).

    With one GPU a worker and more workers than GPUs, workers share them in turn (small models fit
    several to a GPU); a worker that needs several must have its own, or the run is refused.
    """
    if visible is None:  # nothing says which GPUs exist: number them
        return [[str(i * per_worker + j) for j in range(per_worker)] for i in range(count)]
    if per_worker == 1:
        return [[visible[i % len(visible)]] if visible else [] for i in range(count)]
    if count * per_worker > len(visible):
        shown = ",".join(visible) or "none"
        raise InputError(
            f"--parallel {count} with tensor_parallel_size={per_worker} needs {count * per_worker} GPUs, and "
            f"{len(visible)} are visible (CUDA_VISIBLE_DEVICES={shown}): use --parallel "
            f"{max(1, len(visible) // per_worker)} or a smaller tensor_parallel_size")
    return [visible[i * per_worker:(i + 1) * per_worker] for i in range(count)]


def worker_env(index: int, count: int, base: Mapping[str, str] = os.environ,
               gpus: Sequence[str] | None = None) -> dict[str, str]:
    """Worker `index`'s environment: its GPUs (`gpus`; by default one, as `plan_gpus` gives it) and a
    fair share of the CPU cores for its math libraries, unless already chosen."""
    env = dict(base)
    if gpus is None:
        gpus = plan_gpus(count, 1, visible_gpus(base))[index]
    env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
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
    from omnibatch.run.executor import build_task

    build_task(config)  # refuses options the task cannot use before the folder is touched
    rundir.check_writable()
    items = read_inputs(config.inputs, exclude=[config.out_dir]).items
    rundir.prepare(config)
    if count > 1:
        item_durations(items, rundir.root)  # probed once here, not in every worker
    command = list(omnibatch or omnibatch_command())
    plan = plan_gpus(count, gpus_per_worker(config), visible_gpus())
    procs: dict[int, subprocess.Popen] = {}
    outputs = []
    for i in unfinished_shards(rundir, config.task, count):
        out_path = shard_output(rundir, config, i)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out = open(out_path, "ab")
        outputs.append(out)
        procs[i] = subprocess.Popen(
            [*command, "run-shard", str(rundir.config_path(config.task)), "--shard", f"{i}/{count}"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=worker_env(i, count, gpus=plan[i]))
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
    if config.nemo_manifest and config.task == "transcribe":
        from omnibatch.run.nemo_manifest import write_nemo_manifest

        count = write_nemo_manifest(rundir.root, config.fingerprint(), Path(config.nemo_manifest))
        print(f"NeMo manifest: {config.nemo_manifest} ({count} lines)", file=sys.stderr)
    return worker_exit_code(list(codes.values()))


def shard_output(rundir: RunDir, config: RunConfig, index: int) -> Path:
    label = config.with_shard(index, config.num_shards).shard_label
    return rundir.log_path(config.task, label).with_suffix(".out")

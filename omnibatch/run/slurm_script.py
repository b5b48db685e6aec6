"""Render the sbatch scripts of a run from the templates in `omnibatch/templates/`.

Pure text work, tested offline against golden scripts: which shards to run,
the resources asked for, and the command each array task runs. Submitting them
is `omnibatch.run.submit`.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from omnibatch.errors import InputError

ARRAY_TEMPLATE = "shard-array.sbatch"
SUMMARY_TEMPLATE = "run-summary.sbatch"
# What `omnibatch submit` itself decides; a pass-through argument may not change it.
_RESERVED = ("--array", "-a", "--signal", "--open-mode", "--no-requeue", "--wrap", "--output",
             "-o", "--dependency", "-d")


@dataclass
class SlurmOptions:
    """What `omnibatch submit` asks Slurm for. `None` leaves the cluster's default."""

    num_shards: int
    partition: str | None = None
    gpus_per_task: int | None = None
    cpus_per_task: int | None = None
    mem: str | None = None
    time: str | None = None
    account: str | None = None
    qos: str | None = None
    max_parallel: int | None = None
    signal_margin_s: int = 300
    job_name: str | None = None
    extra: list[str] = field(default_factory=list)  # sbatch arguments passed through, e.g. --constraint=a100

    def __post_init__(self) -> None:
        if self.num_shards < 1:
            raise InputError(f"--array must be at least 1, got {self.num_shards}")
        if self.max_parallel is not None and self.max_parallel < 1:
            raise InputError(f"--max-parallel must be at least 1, got {self.max_parallel}")
        if not 0 < self.signal_margin_s <= 65535:
            raise InputError(f"--signal-margin must be 1..65535 seconds, got {self.signal_margin_s}")
        for arg in self.extra:
            name = arg.split("=", 1)[0].split()[0] if arg.strip() else ""
            if not name.startswith("-"):
                raise InputError(f"--sbatch-arg {arg!r} is not an sbatch option "
                                 "(e.g. --sbatch-arg=--constraint=a100)")
            if name in _RESERVED:
                raise InputError(f"--sbatch-arg {arg!r}: omnibatch submit sets {name} itself "
                                 "(see jobs/README.md for why); use --max-parallel or --signal-margin "
                                 "instead")
            if "\n" in arg:
                raise InputError(f"--sbatch-arg {arg!r} holds a line break")

    def resource_args(self) -> list[str]:
        """The sbatch options of the array job, in a stable order."""
        pairs = [("--partition", self.partition), ("--account", self.account), ("--qos", self.qos),
                 ("--time", self.time), ("--cpus-per-task", self.cpus_per_task),
                 ("--gpus-per-task", self.gpus_per_task), ("--mem", self.mem)]
        return [f"{k}={v}" for k, v in pairs if v is not None] + list(self.extra)

    def summary_args(self) -> list[str]:
        """The summary step needs no GPU: only where it may run and who pays."""
        pairs = [("--partition", self.partition), ("--account", self.account), ("--qos", self.qos)]
        return [f"{k}={v}" for k, v in pairs if v is not None]


def array_spec(shards: Sequence[int], max_parallel: int | None = None) -> str:
    """`[0, 1, 2, 5, 7, 8]`, 4 -> `0-2,5,7-8%4`: the shard indexes as sbatch --array takes them."""
    if not shards:
        raise ValueError("no shards to submit")
    ordered = sorted(set(shards))
    runs: list[str] = []
    start = prev = ordered[0]
    for i in [*ordered[1:], None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        runs.append(str(start) if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return ",".join(runs) + (f"%{max_parallel}" if max_parallel else "")


def render(template: str, values: dict[str, str]) -> str:
    """Replace each `{{name}}`; a name the template uses but `values` lacks is an error."""
    def one(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise KeyError(f"template needs {key!r}")
        return values[key]

    return re.sub(r"\{\{(\w+)\}\}", one, template)


def load_template(name: str) -> str:
    return resources.files("omnibatch").joinpath("templates", name).read_text()


def render_array_script(*, task: str, out: Path, config: Path, shards: Sequence[int], options: SlurmOptions,
                        omnibatch: Sequence[str]) -> str:
    return render(load_template(ARRAY_TEMPLATE), {
        **_common(task, out, options, omnibatch),
        "num_shards": str(options.num_shards),
        "array": array_spec(shards, options.max_parallel),
        "signal_margin": str(options.signal_margin_s),
        "sbatch_options": _directives(options.resource_args()),
        "config": shlex.quote(str(config)),
        "output": _output_path(out, "%x-%A_%a.out"),
    })


def render_summary_script(*, task: str, out: Path, array_job: str, options: SlurmOptions,
                          omnibatch: Sequence[str], summary_time: str = "00:30:00") -> str:
    return render(load_template(SUMMARY_TEMPLATE), {
        **_common(task, out, options, omnibatch),
        "array_job": array_job,
        "summary_time": summary_time,
        "sbatch_options": _directives(options.summary_args()),
        "out_arg": shlex.quote(str(out)),
        "output": _output_path(out, "%x-%j.out"),
    })


def _common(task: str, out: Path, options: SlurmOptions, omnibatch: Sequence[str]) -> dict[str, str]:
    if "\n" in str(out):
        raise InputError(f"the output folder {str(out)!r} holds a line break; choose another --out")
    return {
        "task": task,
        "out": str(out),
        "job_name": options.job_name or f"omnibatch-{task}",
        "omnibatch": shlex.join(omnibatch),
    }


def _output_path(out: Path, pattern: str) -> str:
    """Slurm's output file in `_run/slurm/`: a `%` of the folder's own name doubled (Slurm reads %x, %j, ...
    in file names), the whole quoted when it holds a space."""
    path = str(out / "_run" / "slurm").replace("%", "%%") + "/" + pattern
    return f'"{path}"' if re.search(r"\s", path) else path


def _directives(args: Sequence[str]) -> str:
    return "".join(f"#SBATCH {a}\n" for a in args).rstrip("\n")

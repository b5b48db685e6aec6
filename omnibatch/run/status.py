"""`omnibatch status DIR`: what a run folder says about its progress, read from `_run/` and the tables.

Shards come from the configs, markers and attempt records; items from the
Parquet rows themselves (the ground truth: a row exists or it does not).
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omnibatch.config import TASKS, RunConfig
from omnibatch.errors import InputError
from omnibatch.run.attempt import AttemptRecord, read_attempts
from omnibatch.run.progress import clock, media_amount
from omnibatch.run.rundir import RunDir, write_text_atomic
from omnibatch.scoring import CorpusRates
from omnibatch.text_safety import printable


@dataclass
class ShardStatus:
    index: int
    label: str
    state: str  # done | running | stopped | requeued | failed | pending
    attempts: int = 0
    detail: str | None = None


@dataclass
class TaskStatus(CorpusRates):
    task: str
    num_shards: int
    shards: list[ShardStatus]
    items_total: int | None = None  # None when the inputs cannot be read from here
    ok: int = 0
    error: int = 0
    media_s: float = 0.0  # of the ok items
    elapsed_s: float = 0.0  # first attempt start to last attempt end (or now)
    shard_s: float = 0.0  # summed wall time of all attempts
    failed: list[dict[str, Any]] = field(default_factory=list)
    failed_by_stage: dict[str, int] = field(default_factory=dict)  # probe | decode | engine | finish | speech
    truncated: int = 0  # generations that stopped at their token limit (the rows' `truncated` column, summed)
    truncated_items: int = 0  # rows with at least one
    # Corpus WER/CER over the ok rows with a reference (transcribe): errors summed over reference lengths.
    scored: int = 0
    reference_words: int = 0
    word_errors: float = 0.0
    reference_chars: int = 0
    char_errors: float = 0.0

    def count(self, state: str) -> int:
        return sum(1 for s in self.shards if s.state == state)

    @property
    def complete(self) -> bool:
        return all(s.state == "done" for s in self.shards)


@dataclass
class RunStatus:
    root: str
    tasks: list[TaskStatus]

    def exit_code(self) -> int:
        """0 all done and ok, 1 all done with failed items, 3 some shard not done."""
        if not all(t.complete for t in self.tasks):
            return 3
        return 1 if any(t.error for t in self.tasks) else 0


def read_status(root: Path) -> RunStatus:
    rundir = RunDir(Path(root))
    configs = [rundir.config_path(t) for t in TASKS if rundir.config_path(t).exists()]
    if not configs:
        raise InputError(f"{root} holds no omnibatch run (no _run/config-<task>.json): check the folder")
    return RunStatus(str(root), [task_status(rundir, RunConfig.from_json(p.read_text())) for p in configs])


def task_status(rundir: RunDir, config: RunConfig) -> TaskStatus:
    now = time.time()
    shards, starts, ends, shard_s = [], [], [], 0.0
    for i in range(config.num_shards):
        label = config.with_shard(i, config.num_shards).shard_label
        history = read_attempts(rundir.attempts_path(config.task, label))
        shards.append(_shard(i, label, history, rundir.is_complete(config.task, label)))
        for a in history:
            starts.append(a.started)
            ends.append(a.ended or now)
            shard_s += (a.ended or now) - a.started
    status = TaskStatus(config.task, config.num_shards, shards, shard_s=shard_s,
                        elapsed_s=(max(ends) - min(starts)) if starts else 0.0)
    _count_rows(rundir.table_dir(config.task), config.fingerprint(), status)
    try:
        from omnibatch.manifests import read_inputs

        status.items_total = len(read_inputs(config.inputs, exclude=[config.out_dir]).items)
    except Exception:  # noqa: BLE001 - inputs elsewhere or gone: status still reports the rows
        status.items_total = None
    return status


def _shard(index: int, label: str, history: list[AttemptRecord], complete: bool) -> ShardStatus:
    if complete:
        return ShardStatus(index, label, "done", len(history))
    if not history:
        return ShardStatus(index, label, "pending")
    last = history[-1]
    if last.state == "running" and last.host == socket.gethostname() and not _alive(last.pid):
        return ShardStatus(index, label, "failed", len(history), f"process {last.pid} on {last.host} is gone "
                           "(killed?); submit or run again to resume")
    job = last.slurm.get("SLURM_JOB_ID")
    where = f"on {last.host}" + (f", Slurm job {job}" if job else "")
    detail = last.detail if last.state != "running" else f"{where} since {time.ctime(last.started)}"
    if last.state == "done":  # ran to the end but its marker is gone: a later attempt cleared it
        return ShardStatus(index, label, "pending", len(history), "completion marker missing")
    return ShardStatus(index, label, last.state, len(history), detail)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_SCORE_COLUMNS = ("wer", "cer", "reference_words", "reference_chars")


def _count_rows(table_dir: Path, fingerprint: str, status: TaskStatus) -> None:
    import pyarrow.parquet as pq

    from omnibatch.output.parquet import part_files, parts_of_run

    rows: dict[str, dict[str, Any]] = {}
    for part in parts_of_run(part_files(table_dir), fingerprint):
        names = pq.read_schema(part).names
        wanted = ["id", "path", "status", "error", "duration_s"] + (["error_stage"] if "error_stage" in names else [])
        wanted += [c for c in ("truncated", *_SCORE_COLUMNS) if c in names]
        for row in pq.read_table(part, columns=wanted).to_pylist():
            rows[row["id"]] = row
    for row in rows.values():
        cut = row.get("truncated") or 0
        status.truncated += cut
        status.truncated_items += 1 if cut else 0
        if row["status"] == "error":
            status.error += 1
            stage = row.get("error_stage") or "unknown"
            status.failed_by_stage[stage] = status.failed_by_stage.get(stage, 0) + 1
            status.failed.append({"id": row["id"], "path": row["path"], "error": row["error"], "stage": stage})
        else:
            status.ok += 1
            status.media_s += row["duration_s"] or 0.0
            if row.get("wer") is not None and row.get("reference_words"):
                status.scored += 1
                status.reference_words += row["reference_words"]
                status.word_errors += row["wer"] * row["reference_words"]
                status.reference_chars += row.get("reference_chars") or 0
                status.char_errors += (row.get("cer") or 0.0) * (row.get("reference_chars") or 0)


def format_status(run: RunStatus, *, max_failed: int = 20) -> str:
    lines = [f"run folder: {run.root}"]
    for t in run.tasks:
        states = ", ".join(f"{t.count(s)} {s}" for s in ("done", "running", "requeued", "stopped", "failed",
                                                          "pending") if t.count(s))
        lines.append(f"{t.task}: {t.num_shards} shards: {states}")
        total = f" of {t.items_total}" if t.items_total is not None else ""
        by_stage = ", ".join(f"{n} at {stage}" for stage, n in sorted(t.failed_by_stage.items()))
        lines.append(f"  items: {t.ok + t.error}{total} written: {t.ok} ok, {t.error} failed"
                     + (f" ({by_stage})" if by_stage else ""))
        if t.truncated:
            lines.append(f"  truncated: {t.truncated} generation(s) stopped at their token limit, in "
                         f"{t.truncated_items} item(s) (their `truncated` column counts them; raise "
                         "--max-new-tokens)")
        if t.scored:
            lines.append(f"  WER {t.corpus_wer:.2%}, CER {t.corpus_cer or 0:.2%} over {t.scored} files with a "
                         f"reference ({t.reference_words} reference words)")
        if t.media_s:
            rate = f"{t.media_s / t.elapsed_s:.1f}x realtime" if t.elapsed_s else "n/a"
            per_shard = f", {t.media_s / t.shard_s:.1f}x per shard" if t.shard_s else ""
            lines.append(f"  media: {media_amount(t.media_s)} processed in {clock(t.elapsed_s)} "
                         f"({rate}{per_shard})")
        for s in t.shards:
            if s.state != "done" and s.state != "pending" or s.detail:
                lines.append(f"  shard {s.label}: {s.state} after {s.attempts} attempt(s)"
                             + (f": {printable(s.detail)}" if s.detail else ""))
        for f in t.failed[:max_failed]:
            lines.append("  " + printable(f"FAILED {f['id']} ({f['path']}): {f['error']}"))
        if len(t.failed) > max_failed:
            lines.append(f"  ... and {len(t.failed) - max_failed} more failed items (the error column of "
                         f"{run.root}/{t.task}/ lists them all)")
    return "\n".join(lines)


def write_summary(run: RunStatus) -> Path:
    path = RunDir(Path(run.root)).meta / "summary.json"
    data = {"written": time.time(), "exit_code": run.exit_code(), **asdict(run)}
    for task, t in zip(data["tasks"], run.tasks, strict=True):
        task.update(corpus_wer=t.corpus_wer, corpus_cer=t.corpus_cer)
    write_text_atomic(path, json.dumps(data, indent=1, default=str) + "\n")
    return path



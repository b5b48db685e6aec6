"""Run one shard: the run folder, resume, writers, stats and the completion marker around the scheduler.

The pipeline (`omnibatch.pipeline.scheduler`) turns files into finished rows;
this module owns everything that touches the run folder, as datatrove's
executor does: it records the config, picks the items a rerun still owes,
commits each finished file's rows (segments first, then the row, so a row is
never on disk without its segments), keeps the text of summaries that still
await speech, counts what happened, and writes the shard's marker last.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from omnibatch.config import RunConfig
from omnibatch.engine.base import Engine
from omnibatch.manifests import read_inputs
from omnibatch.output.parquet import PartWriter, drop_rows, read_written, remove_shard_parts
from omnibatch.output.tables import SEGMENT_SCHEMA, FileRow, from_table
from omnibatch.pipeline.feed import EngineFeed
from omnibatch.pipeline.scheduler import Finished, Scheduler
from omnibatch.pipeline.tasks import FileResult, Task
from omnibatch.records import MediaInfo, MediaItem
from omnibatch.run.rundir import RunDir

log = logging.getLogger("omnibatch")

COMMIT_EVERY_S = 10.0  # finished rows wait at most this long in memory before their part is written


@dataclass
class ShardStats:
    task: str
    shard: str
    fingerprint: str
    model: str = ""
    engine: str = ""
    items: int = 0
    skipped_done: int = 0
    failed_before: int = 0  # error rows from earlier attempts, kept because --retry-errors was not given
    resumed_speech: int = 0  # summaries kept by an earlier attempt that only needed speaking
    ok: int = 0
    error: int = 0
    failed_by_stage: dict[str, int] = field(default_factory=dict)
    media_seconds: float = 0.0
    regions: int = 0
    engine_calls: int = 0
    engine_s: float = 0.0
    engine_busy_fraction: float = 0.0
    mean_in_flight: float = 0.0
    in_flight_bound: int = 0
    wall_s: float = 0.0
    prompt_tokens: int = 0
    output_tokens: int = 0
    skipped_inputs: list[str] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def count(self, row: FileRow) -> None:
        if row.error:
            self.error += 1
            stage = row.error_stage or "unknown"
            self.failed_by_stage[stage] = self.failed_by_stage.get(stage, 0) + 1
            self.failed.append({"id": row.id, "path": row.path or "", "error": row.error, "stage": stage})
            log.warning("%s failed (%s): %s", row.id, stage, row.error)
        else:
            self.ok += 1
            self.media_seconds += row.duration_s or 0.0

    def take_feed(self, feed: EngineFeed) -> None:
        s = feed.stats
        self.engine_calls, self.engine_s = s.calls, s.busy_s
        self.engine_busy_fraction, self.mean_in_flight, self.in_flight_bound = (
            s.busy_fraction, s.mean_in_flight, s.bound)
        self.prompt_tokens, self.output_tokens = s.prompt_tokens, s.output_tokens


EngineFactory = Callable[[RunConfig], Engine]


def default_engine_factory(config: RunConfig) -> Engine:
    from omnibatch.engine import build_engine

    return build_engine(config.engine, config.model, **config.engine_options)


def build_task(config: RunConfig) -> Task:
    if config.task == "transcribe":
        from omnibatch.pipeline.transcribe import TranscribeTask

        return TranscribeTask(config)
    if config.task == "caption":
        from omnibatch.pipeline.caption import CaptionTask

        return CaptionTask(config)
    if config.task == "summarize":
        from omnibatch.pipeline.summarize import SummarizeTask

        return SummarizeTask(config)
    raise NotImplementedError(f"task {config.task!r} is not built yet")


def select_pending(items: list[MediaItem], config: RunConfig, written: dict) -> list[MediaItem]:
    if not config.resume:
        return items
    return [it for it in items
            if it.id not in written or (config.retry_errors and written[it.id].status == "error")]


class ShardOutput:
    """The shard's writers. A file's segments are written before its row, and rows are committed
    in parts every `COMMIT_EVERY_S` or `rows_per_part` rows, whichever comes first."""

    def __init__(self, rundir: RunDir, config: RunConfig, task: Task, fingerprint: str) -> None:
        common = {"shard_index": config.shard_index, "fingerprint": fingerprint}
        self.rows = PartWriter(rundir.table_dir(config.task), task.row_type.SCHEMA, auto_flush=False,
                               rows_per_part=config.rows_per_part, **common)
        self.segments = PartWriter(rundir.root / "segments", SEGMENT_SCHEMA,
                                   rows_per_part=max(config.rows_per_part * 50, 1), **common)
        self.staged = PartWriter(stage_dir(rundir, config.task), task.row_type.SCHEMA, auto_flush=False,
                                 rows_per_part=config.rows_per_part, **common)
        self._oldest: float | None = None

    def add(self, finished: Finished) -> None:
        if finished.staged:
            self.staged.add([finished.result.row])
        else:
            self.segments.add(finished.result.segments)
            self.rows.add([finished.result.row])
        if self._oldest is None:
            self._oldest = time.monotonic()
        if (len(self.rows) + len(self.staged) >= self.rows.rows_per_part
                or time.monotonic() - self._oldest >= COMMIT_EVERY_S):
            self.commit()

    def commit(self) -> None:
        self.segments.flush()
        self.staged.flush()
        self.rows.flush()
        self._oldest = None


def stage_dir(rundir: RunDir, task: str):
    """Rows whose text is done and whose speech is not: kept so a rerun only speaks them."""
    return rundir.meta / "stage" / task


def owned_folders(rundir: RunDir, config: RunConfig) -> list:
    # Only transcribe writes segments; other tasks must never touch transcribe's.
    folders = [rundir.table_dir(config.task), stage_dir(rundir, config.task)]
    return folders + [rundir.root / "segments"] if config.task == "transcribe" else folders


def run_shard(config: RunConfig, *, engine_factory: EngineFactory = default_engine_factory,
              progress: bool = True, should_stop: Callable[[], bool] = lambda: False) -> ShardStats:
    """Run one shard to the end, or until `should_stop()` says so.

    Stopping commits every finished row and raises Interrupted without writing the
    completion marker, so the next attempt resumes after the last written row.
    """
    from omnibatch.run.sharding import shard_items

    started = time.perf_counter()
    rundir = RunDir(config.out_dir)
    rundir.prepare(config)
    fingerprint = config.fingerprint()
    stats = ShardStats(task=config.task, shard=config.shard_label, fingerprint=fingerprint)
    task = build_task(config)

    inputs = read_inputs(config.inputs)
    stats.skipped_inputs = [f"{s.path}: {s.reason}" for s in inputs.skipped]
    items = shard_items(inputs.items, config)
    written = read_written(rundir.table_dir(config.task), fingerprint) if config.resume else {}
    pending = select_pending(items, config, written)
    stats.items = len(items)
    stats.skipped_done = len(items) - len(pending)
    pending_ids = {it.id for it in pending}
    stats.failed_before = sum(1 for it in items if it.id not in pending_ids and written[it.id].status == "error")
    rundir.clear_marker(config.task, config.shard_label)
    folders = owned_folders(rundir, config)
    if not config.resume:
        for folder in folders:
            remove_shard_parts(folder, config.shard_index)
        staged: dict[str, FileRow] = {}
    else:
        staged = read_staged(rundir, config, task, fingerprint, pending_ids)
        # A redone item's earlier rows go, and so do segments left by a part that was never
        # followed by its row (a kill between the two writes).
        redo = pending_ids - set(staged)
        if redo:
            for folder in folders:
                drop_rows(folder, redo)
    stats.resumed_speech = len(staged)

    output = ShardOutput(rundir, config, task, fingerprint)
    feed = EngineFeed(lambda: _built(engine_factory, config, stats))
    fresh = [it for it in pending if it.id not in staged]
    scheduler = Scheduler(task, fresh, feed, _base_row_maker(feed), workers=config.resolved_workers(),
                          should_stop=should_stop,
                          awaiting_speech=[FileResult(row=r) for r in staged.values()])
    from tqdm import tqdm

    bar = tqdm(total=len(pending), desc=f"{config.task} {config.shard_label}", unit="file",
               disable=not progress, dynamic_ncols=True)
    try:
        for finished in scheduler.run():
            output.add(finished)
            if not finished.staged:
                stats.count(finished.result.row)
                bar.update(1)
    finally:
        bar.close()
        output.commit()
        feed.close()
        stats.regions = scheduler.regions
        stats.take_feed(feed)
    # Every staged row has now been spoken and written as a final row.
    remove_shard_parts(stage_dir(rundir, config.task), config.shard_index)
    stats.wall_s = time.perf_counter() - started
    rundir.mark_complete(config.task, config.shard_label, stats.as_dict())
    return stats


def read_staged(rundir: RunDir, config: RunConfig, task: Task, fingerprint: str,
                pending: set[str]) -> dict[str, FileRow]:
    """Rows an earlier attempt finished up to their speech, for the items still pending."""
    import pyarrow.parquet as pq

    from omnibatch.output.parquet import part_files, parts_of_run

    found: dict[str, FileRow] = {}
    for part in parts_of_run(part_files(stage_dir(rundir, config.task)), fingerprint):
        for row in from_table(pq.read_table(part), task.row_type):
            if row.id in pending:
                found[row.id] = row
    return found


def _built(factory: EngineFactory, config: RunConfig, stats: ShardStats) -> Engine:
    engine = factory(config)
    stats.model, stats.engine = engine.model, engine.name
    return engine


def _base_row_maker(feed: EngineFeed) -> Callable[[MediaItem, MediaInfo | None], FileRow]:
    def base_row(item: MediaItem, info: MediaInfo | None) -> FileRow:
        engine = feed.engine
        return FileRow(
            id=item.id,
            path=str(item.path),
            duration_s=info.duration_s if info else item.duration_s,
            model=engine.model if engine else None,
            engine=engine.name if engine else None,
            language=item.language,
            kind=info.kind if info else None,
            extra=json.dumps(item.extra, sort_keys=True, default=str) if item.extra else None,
        )

    return base_row

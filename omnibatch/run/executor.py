"""Run one shard: the run folder, resume, writers, stats and the completion marker around the scheduler.

The pipeline (`omnibatch.pipeline.scheduler`) turns files into finished rows;
this module owns everything that touches the run folder, as datatrove's
executor does: it records the config, picks the items a rerun still owes,
owns the shard while it runs (a lock), commits each finished file's rows
(segments and words first, then the row, so a row is never on disk without
them), checks on resume that what an ok row vouches for is still there, keeps the text of summaries that still
await speech, counts what happened, and writes the shard's marker last.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omnibatch.config import RunConfig
from omnibatch.engine.base import Engine
from omnibatch.manifests import read_inputs
from omnibatch.output.parquet import PartWriter, drop_rows, read_written, remove_shard_parts
from omnibatch.output.tables import SEGMENT_SCHEMA, WORD_SCHEMA, FileRow, TranscribeRow, from_table
from omnibatch.pipeline.feed import EngineFeed
from omnibatch.pipeline.scheduler import Finished, Scheduler
from omnibatch.pipeline.tasks import FileResult, Task
from omnibatch.records import MediaInfo, MediaItem
from omnibatch.run.rundir import RunDir
from omnibatch.scoring import CorpusRates

log = logging.getLogger("omnibatch")

COMMIT_EVERY_S = 10.0  # finished rows wait at most this long in memory before their part is written


@dataclass
class ShardStats(CorpusRates):
    task: str
    shard: str
    fingerprint: str
    model: str = ""
    engine: str = ""
    items: int = 0
    skipped_done: int = 0
    failed_before: int = 0  # error rows from earlier attempts, kept because --retry-errors was not given
    resumed_speech: int = 0  # summaries kept by an earlier attempt that only needed speaking
    redone: int = 0  # ok rows redone because outputs beside them (segments, subtitles, WAV) were gone
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
    truncated: int = 0  # generations that stopped at their token limit
    # Against the manifests' reference transcripts (transcribe): totals for a corpus WER and CER.
    scored: int = 0
    normalizer: str = ""
    reference_words: int = 0
    word_errors: int = 0
    reference_chars: int = 0
    char_errors: int = 0
    skipped_inputs: list[str] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "corpus_wer": self.corpus_wer, "corpus_cer": self.corpus_cer}

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
            if isinstance(row, TranscribeRow) and row.wer is not None:
                self.scored += 1
                self.reference_words += row.reference_words or 0
                self.word_errors += round(row.wer * (row.reference_words or 0))
                self.reference_chars += row.reference_chars or 0
                self.char_errors += round((row.cer or 0.0) * (row.reference_chars or 0))

    def take_feed(self, feed: EngineFeed) -> None:
        s = feed.stats
        self.engine_calls, self.engine_s = s.calls, s.busy_s
        self.engine_busy_fraction, self.mean_in_flight, self.in_flight_bound = (
            s.busy_fraction, s.mean_in_flight, s.bound)
        self.prompt_tokens, self.output_tokens = s.prompt_tokens, s.output_tokens
        self.truncated = s.truncated


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

        return CaptionTask(config, frame_backend=config.frame_backend)
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
    """The shard's writers. Rows are committed in parts every `COMMIT_EVERY_S` or `rows_per_part`
    rows, whichever comes first; a commit writes the files' segments and words first and their rows
    last, so a row (the commit point of its file) is never on disk without what belongs to it."""

    def __init__(self, rundir: RunDir, config: RunConfig, task: Task, fingerprint: str) -> None:
        common = {"shard_index": config.shard_index, "fingerprint": fingerprint, "auto_flush": False}
        side_rows = max(config.rows_per_part * 50, 1)
        self.rows = PartWriter(rundir.table_dir(config.task), task.row_type.SCHEMA,
                               rows_per_part=config.rows_per_part, **common)
        self.segments = PartWriter(rundir.root / "segments", SEGMENT_SCHEMA, rows_per_part=side_rows, **common)
        self.words = PartWriter(rundir.root / "words", WORD_SCHEMA, rows_per_part=side_rows * 10, **common)
        self.staged = PartWriter(rundir.stage_dir(config.task), task.row_type.SCHEMA,
                                 rows_per_part=config.rows_per_part, **common)
        self._oldest: float | None = None

    def add(self, finished: Finished) -> None:
        result = finished.result
        if finished.staged:
            self.staged.add([result.row])
        else:
            if isinstance(result.row, TranscribeRow) and not result.row.error:
                result.row.num_segments, result.row.num_words = len(result.segments), len(result.words)
            self.segments.add(result.segments)
            self.words.add(result.words)
            self.rows.add([result.row])
        if self._oldest is None:
            self._oldest = time.monotonic()
        if (len(self.rows) + len(self.staged) >= self.rows.rows_per_part
                or time.monotonic() - self._oldest >= COMMIT_EVERY_S):
            self.commit()

    def commit(self) -> None:
        self.segments.flush()
        self.words.flush()
        self.staged.flush()
        self.rows.flush()
        self._oldest = None


@dataclass
class ResumePlan:
    """What this attempt does with the shard's items, from what earlier attempts wrote."""

    items: list[MediaItem]
    fresh: list[MediaItem]  # to run from the start
    staged: dict[str, FileRow]  # text done, speech still owed (summarize)
    skipped_done: int = 0
    failed_before: int = 0
    redone: dict[str, str] = field(default_factory=dict)  # ok rows redone because outputs beside them are gone


def plan_resume(rundir: RunDir, config: RunConfig, task: Task, items: list[MediaItem],
                fingerprint: str) -> ResumePlan:
    """Pick the items this attempt owes, and clear what earlier attempts left of them.

    The reading runs unlocked (parts are replaced atomically, so a reader sees the old part or
    the new one); only the rewriting of parts that other shards may also rewrite holds the
    folder lock, so the shards of an array starting together do not queue behind each other.
    """
    from omnibatch.run.locks import folder_lock
    from omnibatch.run.verify import owed_outputs

    folders = rundir.owned_folders(config.task)
    ids = {it.id for it in items}
    if not config.resume:  # --no-resume: every row of this shard's items goes, whoever wrote it
        with folder_lock(rundir.root):
            for folder in folders:
                drop_rows(folder, ids)
        return ResumePlan(items=items, fresh=list(items), staged={})
    written = read_written(rundir.table_dir(config.task), fingerprint)
    pending = select_pending(items, config, written)
    pending_ids = {it.id for it in pending}
    done_ok = {i for i in ids - pending_ids if written[i].status == "ok"}
    owed = owed_outputs(rundir.root, config, fingerprint, done_ok, shard_index=config.shard_index)
    staged = read_staged(rundir, config, task, fingerprint, pending_ids)
    if owed.respeak:
        staged.update(_spoken_rows_to_redo(rundir, config, task, fingerprint, owed.respeak))
    redo_ids = owed.redo | owed.respeak
    pending_ids |= redo_ids
    for item_id in sorted(redo_ids):
        log.warning("%s: redone, %s", item_id, owed.reasons[item_id])
    # A redone item's earlier rows go, and so do segments and words of a commit that never wrote
    # its row (a kill between the two writes).
    redo = pending_ids - (set(staged) - owed.respeak)
    if redo:
        with folder_lock(rundir.root):
            for folder in folders:
                drop_rows(folder, redo)
    plan = ResumePlan(items=items, fresh=[it for it in items if it.id in pending_ids and it.id not in staged],
                      staged=staged, redone=owed.reasons)
    plan.skipped_done = len(items) - len(pending_ids)
    plan.failed_before = sum(1 for i in ids - pending_ids if written[i].status == "error")
    return plan


def _spoken_rows_to_redo(rundir: RunDir, config: RunConfig, task: Task, fingerprint: str,
                         ids: set[str]) -> dict[str, FileRow]:
    """Final summarize rows whose WAV is gone, back to awaiting their speech."""
    found = typed_rows(rundir.table_dir(config.task), task, fingerprint, ids)
    for row in found.values():
        row.audio_path = row.audio_duration_s = row.sample_rate = None
    return found


def run_shard(config: RunConfig, *, engine_factory: EngineFactory = default_engine_factory,
              progress: bool = True, should_stop: Callable[[], bool] = lambda: False) -> ShardStats:
    """Run one shard to the end, or until `should_stop()` says so.

    The inputs are read (and a bad one refused) before anything is written to the folder; the
    shard is then owned by this process alone (`locks.shard_lock`) until it returns. Stopping
    commits every finished row and raises Interrupted without writing the completion marker, so
    the next attempt resumes after the last written row.
    """
    from omnibatch.run.locks import shard_lock
    from omnibatch.run.sharding import shard_items

    started = time.perf_counter()
    rundir = RunDir(config.out_dir)
    task = build_task(config)  # refuses options the task cannot use
    inputs = read_inputs(config.inputs, exclude=[config.out_dir])
    items = shard_items(inputs.items, config)
    rundir.check_writable()
    with shard_lock(rundir.root, config.task, config.shard_index):
        moved = rundir.prepare(config)
        if moved:
            log.warning("set aside %d parts of earlier settings in %s", moved, rundir.meta / "superseded")
        fingerprint = config.fingerprint()
        rundir.clear_marker(config.task, config.shard_label)
        plan = plan_resume(rundir, config, task, items, fingerprint)
        stats = ShardStats(task=config.task, shard=config.shard_label, fingerprint=fingerprint,
                           items=len(items), skipped_done=plan.skipped_done, failed_before=plan.failed_before,
                           resumed_speech=len(plan.staged), redone=len(plan.redone), normalizer=config.normalizer,
                           skipped_inputs=[str(s) for s in inputs.skipped])
        _run_items(config, task, plan, rundir, stats, engine_factory, progress, should_stop)
        # Every staged row has now been spoken and written as a final row.
        remove_shard_parts(rundir.stage_dir(config.task), config.shard_index)
        stats.wall_s = time.perf_counter() - started
        rundir.mark_complete(config.task, config.shard_label, stats.as_dict())
    return stats


def _run_items(config: RunConfig, task: Task, plan: ResumePlan, rundir: RunDir, stats: ShardStats,
               engine_factory: EngineFactory, progress: bool, should_stop: Callable[[], bool]) -> None:
    output = ShardOutput(rundir, config, task, stats.fingerprint)
    feed = EngineFeed(lambda: _built(engine_factory, config, stats))
    scheduler = Scheduler(task, plan.fresh, feed, _base_row_maker(feed), workers=config.resolved_workers(),
                          should_stop=should_stop, max_duration_s=config.max_duration_s,
                          awaiting_speech=[FileResult(row=r) for r in plan.staged.values()])
    from omnibatch.run.progress import RunProgress, Snapshot, estimated_total, known_media, watching

    media_s, unknown = known_media(plan.fresh, config.out_dir)
    meter = RunProgress(f"{config.task} {config.shard_label}", len(plan.fresh) + len(plan.staged), media_s,
                        interactive=progress, speech=config.task == "summarize")
    done = [0]

    def snapshot() -> tuple[Snapshot, int]:
        return Snapshot(files_done=done[0], decoded_s=scheduler.decoded_s, engine_s=scheduler.engine_done_s,
                        chunks_decoded=scheduler.regions, chunks_done=scheduler.regions_done,
                        spoken=scheduler.spoken), len(scheduler.to_speak)

    try:
        files = len(plan.fresh)
        total = (lambda: estimated_total(media_s, len(unknown), scheduler.probed_files, scheduler.probed_s,
                                         files)) if unknown else None
        with watching(meter, snapshot, total=total):
            for finished in scheduler.run():
                output.add(finished)
                if not finished.staged:
                    stats.count(finished.result.row)
                    done[0] += 1
    finally:
        output.commit()
        feed.close()
        stats.regions = scheduler.regions
        stats.take_feed(feed)


def read_staged(rundir: RunDir, config: RunConfig, task: Task, fingerprint: str,
                pending: set[str]) -> dict[str, FileRow]:
    """Rows an earlier attempt finished up to their speech, for the items still pending."""
    return typed_rows(rundir.stage_dir(config.task), task, fingerprint, pending)


def typed_rows(folder: Path, task: Task, fingerprint: str, ids: set[str]) -> dict[str, FileRow]:
    """The last row of each id in `ids` that runs with `fingerprint` wrote in `folder`, typed."""
    from omnibatch.output.parquet import part_files, parts_of_run, read_part

    found: dict[str, FileRow] = {}
    for part in parts_of_run(part_files(folder), fingerprint):
        for row in from_table(read_part(part), task.row_type):
            if row.id in ids:
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
            path=item.display_path,
            duration_s=info.duration_s if info else item.duration_s,
            model=engine.model if engine else None,
            engine=engine.name if engine else None,
            language=item.language,
            kind=info.kind if info else None,
            extra=json.dumps(item.extra, sort_keys=True, default=str) if item.extra else None,
        )

    return base_row

"""Run one shard of a task: inputs -> decode pool -> engine waves -> finished rows -> Parquet.

The engine gets work in waves: the regions of many files at once (up to
`wave_seconds` of media), so continuous batching keeps it full, while the decode
pool runs ahead. A file's row is written once all of its regions are back.
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
from omnibatch.errors import EngineError, Interrupted, OmnibatchError
from omnibatch.manifests import read_inputs
from omnibatch.output.parquet import PartWriter, drop_rows, read_written, remove_shard_parts
from omnibatch.output.tables import SEGMENT_SCHEMA, file_schema
from omnibatch.pipeline.prefetch import ItemState, Loaded, Planned, describe, iter_loaded, make_executor
from omnibatch.pipeline.tasks import FileResult, Task
from omnibatch.records import Generation, MediaItem, Request
from omnibatch.run.rundir import RunDir

log = logging.getLogger("omnibatch")


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
    ok: int = 0
    error: int = 0
    media_seconds: float = 0.0
    regions: int = 0
    engine_calls: int = 0
    engine_s: float = 0.0
    wall_s: float = 0.0
    prompt_tokens: int = 0
    output_tokens: int = 0
    skipped_inputs: list[str] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


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


def base_row(item: MediaItem, state: ItemState, engine: Engine | None) -> dict[str, Any]:
    return {
        "id": item.id,
        "path": str(item.path),
        "status": "error" if state.error else "ok",
        "error": state.error,
        "duration_s": state.info.duration_s if state.info else item.duration_s,
        "model": engine.model if engine else None,
        "engine": engine.name if engine else None,
        "language": item.language,
        "kind": state.info.kind if state.info else None,
        "extra": json.dumps(item.extra, sort_keys=True, default=str) if item.extra else None,
    }


EngineFactory = Callable[[RunConfig], Engine]


def default_engine_factory(config: RunConfig) -> Engine:
    from omnibatch.engine import build_engine

    return build_engine(config.engine, config.model, **config.engine_options)


def generate(engine: Engine, requests: list[Request]) -> list[Generation]:
    """Call the engine; a crash (not a rejected request) stops the run, resumable."""
    try:
        return engine.generate(requests)
    except OmnibatchError:
        raise
    except Exception as exc:
        raise EngineError(f"the {engine.name} engine failed: {describe(exc)}. Finished rows are kept; "
                          "rerun the same command to resume.") from exc


def select_pending(items: list[MediaItem], config: RunConfig, written: dict) -> list[MediaItem]:
    if not config.resume:
        return items
    return [it for it in items
            if it.id not in written or (config.retry_errors and written[it.id].status == "error")]


def run_shard(config: RunConfig, *, engine_factory: EngineFactory = default_engine_factory,
              progress: bool = True, should_stop: Callable[[], bool] = lambda: False) -> ShardStats:
    """Run one shard to the end, or until `should_stop()` says so between waves.

    Stopping flushes every finished row and raises Interrupted without writing the
    completion marker, so the next attempt resumes after the last written row.
    """
    from omnibatch.run.sharding import shard_items

    started = time.perf_counter()
    rundir = RunDir(config.out_dir)
    rundir.prepare(config)
    fingerprint = config.fingerprint()
    stats = ShardStats(task=config.task, shard=config.shard_label, fingerprint=fingerprint)

    inputs = read_inputs(config.inputs)
    stats.skipped_inputs = [f"{s.path}: {s.reason}" for s in inputs.skipped]
    items = shard_items(inputs.items, config)
    table_dir = rundir.table_dir(config.task)
    written = read_written(table_dir, fingerprint) if config.resume else {}
    pending = select_pending(items, config, written)
    stats.items = len(items)
    stats.skipped_done = len(items) - len(pending)
    pending_ids = {it.id for it in pending}
    stats.failed_before = sum(1 for it in items if it.id not in pending_ids and written[it.id].status == "error")
    rundir.clear_marker(config.task, config.shard_label)
    # Only transcribe writes segments; other tasks must never touch transcribe's.
    segment_dir = rundir.root / "segments"
    owned = [table_dir, segment_dir] if config.task == "transcribe" else [table_dir]
    if not config.resume:
        for folder in owned:
            remove_shard_parts(folder, config.shard_index)
    elif redo := {it.id for it in pending if it.id in written}:
        for folder in owned:
            drop_rows(folder, redo)

    task = build_task(config)
    rows = PartWriter(table_dir, file_schema(config.task), shard_index=config.shard_index,
                      fingerprint=fingerprint, rows_per_part=config.rows_per_part)
    segments = PartWriter(segment_dir, SEGMENT_SCHEMA, shard_index=config.shard_index,
                          fingerprint=fingerprint, rows_per_part=max(config.rows_per_part * 50, 1))
    engine: Engine | None = None
    from tqdm import tqdm

    bar = tqdm(total=len(pending), desc=f"{config.task} {config.shard_label}", unit="file",
               disable=not progress, dynamic_ncols=True)

    deferred: list[tuple[ItemState, FileResult]] = []
    defer_rows = hasattr(task, "finalize")  # e.g. speech: rendered for all files after all Thinker work

    def finish(state: ItemState, rounds: list[list[Generation]]) -> None:
        result: FileResult | None = None
        if state.error is None:
            ordered = [state.generations[c.index] for c in state.chunks]
            failed = next((g for g in ordered if g.error), None)
            answer_error = next((g.error for r in rounds for g in r if g.error), None)
            if failed is not None:
                chunk = state.chunks[ordered.index(failed)]
                state.error = f"region {chunk.start_s:.1f}-{chunk.end_s:.1f} s: {failed.error}"
            elif answer_error:
                state.error = answer_error
            else:
                try:
                    result = task.finish(state.item, state.info, state.chunks, ordered, rounds)
                except Exception as exc:  # noqa: BLE001 - one bad file never stops a run
                    state.error = describe(exc)
        if state.error and should_stop():
            log.info("%s failed while stopping (%s): not recorded, the next attempt redoes it", state.item.id,
                     state.error)  # a signal also kills the ffmpeg and engine processes mid-item
            return
        if defer_rows and result is not None:
            deferred.append((state, result))
        else:
            record(state, result)

    def record(state: ItemState, result: FileResult | None) -> None:
        if result is not None and result.error and not state.error:
            state.error = result.error
        row = base_row(state.item, state, engine)
        if result is not None:
            row.update(result.row)
            segments.add(result.segments)
        rows.add([row])
        if state.error:
            stats.error += 1
            stats.failed.append({"id": state.item.id, "path": str(state.item.path), "error": state.error})
            log.warning("%s failed: %s", state.item.id, state.error)
        else:
            stats.ok += 1
            stats.media_seconds += state.info.duration_s if state.info else 0.0
        bar.update(1)

    def ensure_engine() -> Engine:
        nonlocal engine
        if engine is None:
            engine = engine_factory(config)
            stats.model, stats.engine = engine.model, engine.name
        return engine

    def timed_generate(requests: list[Request]) -> list[Generation]:
        t0 = time.perf_counter()
        outs = generate(ensure_engine(), requests)
        stats.engine_s += time.perf_counter() - t0
        stats.engine_calls += 1
        for gen in outs:
            stats.prompt_tokens += gen.prompt_tokens
            stats.output_tokens += gen.output_tokens
        return outs

    def run_followups(done: list[ItemState]) -> dict[int, list[list[Generation]]]:
        """Extra Thinker passes over text (e.g. map-reduce summaries), batched across files, round by round."""
        rounds: dict[int, list[list[Generation]]] = {id(s): [] for s in done}
        active = [s for s in done if s.error is None and not any(g.error for g in s.generations.values())]
        while active:
            asked: list[tuple[ItemState, list[Request]]] = []
            for s in active:
                ordered = [s.generations[c.index] for c in s.chunks]
                requests = task.followup(s.item, s.info, s.chunks, ordered, rounds[id(s)])
                if requests:
                    asked.append((s, requests))
            if not asked:
                break
            outs = iter(timed_generate([r for _, reqs in asked for r in reqs]))
            for s, reqs in asked:
                rounds[id(s)].append([next(outs) for _ in reqs])
            active = [s for s, _ in asked if not any(g.error for g in rounds[id(s)][-1])]
        return rounds

    def run_wave(wave: list[tuple[ItemState, Request]], open_items: list[ItemState]) -> None:
        if wave:
            generations = timed_generate([r for _, r in wave])
            for (state, request), gen in zip(wave, generations, strict=True):
                state.generations[int(request.id.rsplit("#", 1)[1])] = gen
        done = [s for s in open_items if s.complete]
        open_items[:] = [s for s in open_items if not s.complete]
        rounds = run_followups(done)
        for state in done:
            finish(state, rounds[id(state)])
        rows.flush()
        segments.flush()

    executor = make_executor(config.workers)
    closed = False
    wave: list[tuple[ItemState, Request]] = []
    wave_s = 0.0
    open_items: list[ItemState] = []
    try:
        # A task whose requests are heavy (video frames) may hold fewer media seconds per wave.
        wave_budget_s = min(config.wave_seconds, getattr(task, "max_wave_seconds", config.wave_seconds))
        for event in iter_loaded(task, pending, executor, max_pending_s=wave_budget_s):
            if should_stop():
                break
            if isinstance(event, Planned):
                open_items.append(event.state)
                stats.regions += len(event.state.chunks)
            elif isinstance(event, Loaded) and event.request is not None and event.state.error is None:
                wave.append((event.state, event.request))
                wave_s += event.chunk.duration_s
            if wave_s >= wave_budget_s:
                run_wave(wave, open_items)
                wave, wave_s = [], 0.0
                if should_stop():
                    raise Interrupted(f"stopped on request after {stats.ok + stats.error} items; "
                                      "rerun the same command to resume")
            elif not wave and any(s.complete for s in open_items):
                run_wave([], open_items)  # errors and empty files need no engine
        if should_stop():
            raise Interrupted("stopped on request before the last wave; rerun the same command to resume")
        run_wave(wave, open_items)
        if defer_rows:
            if engine is not None:  # free the Thinker before the speech models load
                engine.close()
                closed = True
            task.finalize(deferred, should_stop)
            for state, result in deferred:
                record(state, result)
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
        bar.close()
        rows.flush()
        segments.flush()
        if engine is not None and not closed:
            engine.close()
    stats.wall_s = time.perf_counter() - started
    rundir.mark_complete(config.task, config.shard_label, stats.as_dict())
    return stats

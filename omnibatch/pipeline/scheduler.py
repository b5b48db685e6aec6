"""Keep the engine full and hand on every file the moment it is finished.

Decode workers stream each file's regions in; the scheduler puts them into the
engine queue as soon as the engine has room (text rounds first, so a file that
is nearly done finishes before new files start), steps the engine, and routes
each generation back to its file by the request's own fields (file, pass,
index). A file whose first pass is back asks its task for the next round, which
joins the same queue at once; a file with nothing more to ask is finished and
yielded, an error row included, while the rest of the shard goes on.

Speech (summarize) is its own pass after the Thinker work: rows that need it
are yielded first as `staged` (their text is final and can be kept), then again
as final once their WAV is written.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from omnibatch.errors import Interrupted, disk_full
from omnibatch.output.tables import FileRow
from omnibatch.pipeline.decode_pool import (
    Decoded,
    Ended,
    Event,
    Failed,
    Probed,
    Prober,
    describe,
    open_source,
    probe_media,
)
from omnibatch.pipeline.feed import EngineFeed
from omnibatch.pipeline.generation_notes import file_generations, note_generations
from omnibatch.pipeline.tasks import FIRST_PASS, FileResult, FileWork, Task, round_step
from omnibatch.records import Generation, MediaInfo, MediaItem, Request

log = logging.getLogger("omnibatch")

WAIT_S = 0.2  # how long to wait for a decode event when the engine has nothing to do
REGION_S = 30.0  # a typical first-pass region (chunk or clip), for sizing the decode queue
SLACK = 2  # decoded requests held beyond the engine's free room, so a freed slot is filled at once


@dataclass(frozen=True)
class Finished:
    """A file handed on: `staged` rows have their text and still await the speech pass."""

    result: FileResult
    staged: bool = False


BaseRow = Callable[[MediaItem, MediaInfo | None], FileRow]


class Scheduler:
    """One shard's files through all of their passes. Iterate `run()` for the finished files."""

    def __init__(self, task: Task, items: Sequence[MediaItem], feed: EngineFeed, base_row: BaseRow, *,
                 workers: int = 1, should_stop: Callable[[], bool] = lambda: False,
                 awaiting_speech: Sequence[FileResult] = (), prober: Prober = probe_media,
                 max_duration_s: float | None = None) -> None:
        self.task, self.items, self.feed = task, list(items), feed
        self.max_duration_s = max_duration_s
        self.base_row = base_row
        self.workers = workers
        self.should_stop = should_stop
        self.prober = prober
        self.to_speak: list[FileResult] = list(awaiting_speech)
        self.files: dict[int, FileWork] = {}
        self.ready: deque[tuple[FileWork, Request]] = deque()  # decoded first-pass requests
        self.urgent: deque[tuple[FileWork, Request]] = deque()  # text rounds: they go first
        self.in_flight: dict[str, tuple[FileWork, Request]] = {}
        self.held_s = 0.0  # media seconds in `ready`
        self.regions = 0
        # Progress counters (read by omnibatch.run.progress from another thread): media seconds
        # decoded and answered, answered regions, spoken files.
        self.decoded_s = 0.0
        self.probed_files, self.probed_s = 0, 0.0  # for the progress total: durations as files are probed
        self.engine_done_s = 0.0
        self.regions_done = 0
        self.spoken = 0
        self.discarded = 0  # regions decoded for a file that had already failed (cancel() keeps it small)
        self._out: deque[Finished] = deque()
        self._source = None
        self._seqs: dict[int, int] = {}  # id(FileWork) -> its file number, to cancel its decoding
        self._started: dict[str, float] = {}  # staged row id -> its file's start, for processing_s

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> Iterator[Finished]:
        source = self._source = open_source(self.task, self.items, self.workers,
                                            max_queued=self._queue_size(), prober=self.prober,
                                            max_duration_s=self.max_duration_s)
        try:
            while True:
                self._check_stop()
                self._take_decoded(source)
                self._submit()
                if self.feed.in_flight:
                    for generation in self.feed.step():
                        self._route(generation)
                elif not (self.ready or self.urgent):
                    if source.exhausted:
                        break
                    event = source.poll(WAIT_S)
                    if event is not None:
                        self._on_event(event)
                yield from self._drain()
            self._fail_leftovers()
            yield from self._drain()
        finally:
            source.close()
        if self.to_speak:
            yield from self._speech_pass()

    def _queue_size(self) -> int:
        """Decoded regions the workers may queue while this process is busy in an engine step.

        That queue is what refills the engine after a step, so it must hold a few batches:
        sized by media (the task's hold, at ~30 s a region), never below two per worker.
        """
        return max(8, 2 * self.workers, int(self.task.hold_seconds / REGION_S))

    def _check_stop(self) -> None:
        if self.should_stop():
            raise Interrupted("stopped on request; every finished file is written, and rerunning the "
                              "same command resumes after them")

    def _take_decoded(self, source) -> None:
        while len(self.ready) < self.feed.room() + SLACK and self.held_s < self.task.hold_seconds:
            event = source.poll(0.0)
            if event is None:
                return
            self._on_event(event)

    def _submit(self) -> None:
        if not (self.urgent or self.ready):
            return
        self.feed.ensure()  # its bound decides how many go in
        batch: list[Request] = []
        room = self.feed.room()
        while len(batch) < room and (self.urgent or self.ready):
            queue = self.urgent if self.urgent else self.ready
            file, request = queue.popleft()
            if queue is self.ready:
                self.held_s -= self._seconds(file, request)
            if file.closed:
                continue  # its file failed while the request waited
            self.in_flight[request.id] = (file, request)
            batch.append(request)
        self.feed.submit(batch)

    def _drain(self) -> Iterator[Finished]:
        while self._out:
            yield self._out.popleft()

    # -- decode events --------------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        if isinstance(event, Probed):
            self.probed_files += 1
            self.probed_s += event.info.duration_s or 0.0
            file = self.files[event.seq] = FileWork(self.items[event.seq], info=event.info,
                                                    started=time.monotonic())
            self._seqs[id(file)] = event.seq
        elif isinstance(event, Decoded):
            file = self.files[event.seq]
            if file.closed:
                self.discarded += 1
                return
            chunk, request = event.region.chunk, event.region.request
            request.item_id, request.step, request.index = file.item.id, FIRST_PASS, chunk.index
            file.chunks.append(chunk)
            self.regions += 1
            self.ready.append((file, request))
            self.held_s += chunk.duration_s
            self.decoded_s += chunk.duration_s
        elif isinstance(event, Ended):
            file = self.files[event.seq]
            file.decoded_all = True
            if not file.closed and file.first_pass_done:
                self._advance(file)
        elif isinstance(event, Failed):
            file = self.files.setdefault(event.seq, FileWork(self.items[event.seq], started=time.monotonic()))
            if not file.closed:
                file.fail(event.stage, event.error)
                self._close_failed(file)

    def _seconds(self, file: FileWork, request: Request) -> float:
        chunk = file.chunks[request.index] if request.index < len(file.chunks) else None
        return chunk.duration_s if chunk is not None else 0.0

    # -- generations ----------------------------------------------------------------------

    def _route(self, generation: Generation) -> None:
        entry = self.in_flight.pop(generation.request_id, None)
        if entry is None:
            log.warning("the engine returned an unknown request id %r; ignored", generation.request_id)
            return
        file, request = entry
        if file.closed:
            return
        printable_generation(generation)  # what becomes rows and subtitles holds no control bytes
        if request.step == FIRST_PASS:
            self.regions_done += 1
            self.engine_done_s += self._seconds(file, request)
            file.generations[request.index] = generation
            if generation.error:
                chunk = file.chunks[request.index]
                file.fail("engine", f"region {chunk.start_s:.1f}-{chunk.end_s:.1f} s: {generation.error}")
                self._close_failed(file)
            elif file.first_pass_done:
                self._advance(file)
            return
        file.round_answers[request.index] = generation
        if generation.error:
            file.fail("engine", generation.error)
            self._close_failed(file)
        elif len(file.round_answers) == file.round_size:
            file.rounds.append([file.round_answers[k] for k in range(file.round_size)])
            file.round_answers, file.round_size = {}, 0
            self._advance(file)

    def _advance(self, file: FileWork) -> None:
        """The file's last pass is complete: queue its next round, or finish it."""
        try:
            requests = self.task.followup(file.item, file.info, file.chunks, file.ordered(), file.rounds)
        except Exception as exc:  # noqa: BLE001 - one bad file never stops a run
            file.fail("finish", describe(exc))
            self._close_failed(file)
            return
        if not requests:
            self._finish(file)
            return
        step = round_step(len(file.rounds))
        for k, request in enumerate(requests):
            request.item_id, request.step, request.index = file.item.id, step, k
            self.urgent.append((file, request))
        file.round_size = len(requests)

    def _finish(self, file: FileWork) -> None:
        file.closed = True
        self._seqs.pop(id(file), None)
        base = note_generations(self.base_row(file.item, file.info), file_generations(file))
        try:
            result = self.task.finish(base, file.item, file.info, file.chunks, file.ordered(), file.rounds)
        except Exception as exc:  # noqa: BLE001
            if disk_full(exc):
                raise  # not this file's fault: the run stops, and the file is redone when there is room
            base.fail("finish", describe(exc))
            self._emit(FileResult(row=self.task.row_type.extend(_timed(base, file.started))))
            return
        _timed(result.row, file.started)
        if result.error:
            result.row.fail("finish", result.error)
        elif self.task.speech_request(result.row) is not None:
            if file.started is not None:
                self._started[result.row.id] = file.started
            self.to_speak.append(result)
            self._out.append(Finished(result, staged=True))
            return
        self._emit(result)

    def _close_failed(self, file: FileWork) -> None:
        file.closed = True
        seq = self._seqs.pop(id(file), None)
        if seq is not None and not file.decoded_all and self._source is not None:
            self._source.cancel(seq)  # the rest of its regions would be thrown away
        base = note_generations(self.base_row(file.item, file.info), file_generations(file))
        base.fail(file.error_stage or "decode", file.error or "failed")
        self._emit(FileResult(row=self.task.row_type.extend(_timed(base, file.started))))

    def _emit(self, result: FileResult) -> None:
        if result.row.error and self.should_stop():
            # A stop signal also reaches ffmpeg and the engine, so a failure now may be the signal's
            # doing: leave the file for the next attempt rather than record a false error.
            log.info("%s failed while stopping (%s): not recorded, the next attempt redoes it",
                     result.row.id, result.row.error)
            return
        self._out.append(Finished(result))

    def _fail_leftovers(self) -> None:
        for file in self.files.values():
            if not file.closed:
                file.fail("finish", "the scheduler ended with this file unfinished (a bug: please report it)")
                self._close_failed(file)

    # -- speech ---------------------------------------------------------------------------

    def _speech_pass(self) -> Iterator[Finished]:
        """Speak every staged row, a batch at a time, with the Thinker closed to free its memory."""
        self.feed.close()
        engine = self.task.build_speech()
        try:
            size = max(1, int(getattr(engine, "batch_size", 1)))
            todo = list(self.to_speak)
            for start in range(0, len(todo), size):
                self._check_stop()
                batch = todo[start:start + size]
                requests = [self.task.speech_request(r.row) for r in batch]
                began = time.monotonic()
                for result, spoken in zip(batch, self.task.speak(engine, requests), strict=True):
                    self.task.apply_speech(result.row, spoken)
                    row = result.row
                    if row.id in self._started:
                        _timed(row, self._started.pop(row.id))
                    elif row.processing_s is not None:  # staged by an earlier attempt: add its speech
                        row.processing_s = round(row.processing_s + time.monotonic() - began, 3)
                    self.spoken += 1
                    yield Finished(result)
        finally:
            engine.close()


def _timed(row: FileRow, started: float | None) -> FileRow:
    """`row` with its `processing_s`: wall seconds from its file's first decode event to now."""
    if started is not None:
        row.processing_s = round(time.monotonic() - started, 3)
    return row


def printable_generation(generation: Generation) -> None:
    """Drop control bytes from an engine's text (a random-weight model emits them) where it enters
    the pipeline, so no row, subtitle, summary or spoken prompt holds them."""
    from omnibatch.text_safety import generated_text

    generation.text = generated_text(generation.text)
    if generation.reasoning:
        generation.reasoning = generated_text(generation.reasoning)
    for segment in generation.segments or []:
        segment.text = generated_text(segment.text)
        for word in segment.words or []:
            word.text = generated_text(word.text)

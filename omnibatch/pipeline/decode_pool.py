"""Decode ahead of the engine: worker processes that each stream one file at a time.

A worker probes a file, runs the task's first pass over it (one ffmpeg stream:
VAD, online cuts, each region's samples) and sends every region request out
the moment it is decoded, then says how many there were. Events from all
workers share one bounded queue, so a worker that runs ahead of the engine
blocks instead of filling memory: what is held is the queue, not the file.

`workers=0` runs the same events inline in the calling process, one event per
`poll`, for tests and debugging.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from omnibatch.errors import OmnibatchError
from omnibatch.pipeline.tasks import RegionRequest, Task
from omnibatch.records import MediaInfo, MediaItem

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2)


@dataclass(frozen=True)
class Started:
    seq: int
    worker: int


@dataclass(frozen=True)
class Probed:
    seq: int
    info: MediaInfo


@dataclass(frozen=True)
class Decoded:
    seq: int
    region: RegionRequest


@dataclass(frozen=True)
class Ended:
    seq: int
    count: int  # regions in the first pass


@dataclass(frozen=True)
class Failed:
    seq: int
    stage: str  # "probe" | "decode"
    error: str


Event = Started | Probed | Decoded | Ended | Failed


def describe(exc: BaseException) -> str:
    if isinstance(exc, OmnibatchError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def probe_media(item: MediaItem) -> MediaInfo:
    from omnibatch.media import probe

    return probe(item.path)


Prober = Callable[[MediaItem], MediaInfo]


def decode_events(task: Task, seq: int, item: MediaItem, prober: Prober = probe_media) -> Iterator[Event]:
    """Every event of one file's first pass, in order; failures become a Failed event."""
    try:
        info = prober(item)
    except Exception as exc:  # noqa: BLE001 - one bad file never stops a run
        yield Failed(seq, "probe", describe(exc))
        return
    yield Probed(seq, info)
    count = 0
    try:
        for region in task.decode(item, info):
            count += 1
            yield Decoded(seq, region)
    except Exception as exc:  # noqa: BLE001
        yield Failed(seq, "decode", describe(exc))
        return
    yield Ended(seq, count)


class InlineSource:
    """The decode pass in this process, one event per poll."""

    def __init__(self, task: Task, items: Sequence[MediaItem], prober: Prober = probe_media) -> None:
        self._events = (e for seq, item in enumerate(items) for e in decode_events(task, seq, item, prober))
        self.exhausted = False

    def poll(self, timeout_s: float = 0.0) -> Event | None:
        if self.exhausted:
            return None
        event = next(self._events, None)
        self.exhausted = event is None
        return event

    def close(self) -> None:
        self._events.close()


def _worker_main(worker: int, task: Task, items: Sequence[MediaItem], prober: Prober, jobs, events) -> None:
    for s in STOP_SIGNALS:  # the main process decides when everyone stops
        signal.signal(s, signal.SIG_IGN)
    _die_with_parent()
    while True:
        seq = jobs.get()
        if seq is None:
            return
        events.put(Started(seq, worker))
        for event in decode_events(task, seq, items[seq], prober):
            events.put(event)


def _die_with_parent() -> None:
    """On Linux, have the kernel end this worker when the main process dies (even by SIGKILL)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:  # the parent died before the call above took effect
        os._exit(0)


class ProcessSource:
    """`workers` decode processes (spawned: the main process may hold torch and engine threads)."""

    def __init__(self, task: Task, items: Sequence[MediaItem], workers: int, *, max_queued: int = 8,
                 prober: Prober = probe_media) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._items = list(items)
        self._jobs = ctx.Queue()
        for seq in range(len(self._items)):
            self._jobs.put(seq)
        self._events = ctx.Queue(maxsize=max(2, max_queued))
        self._ctx, self._task, self._prober = ctx, task, prober
        self._procs: dict[int, multiprocessing.Process] = {}
        self._current: dict[int, int | None] = {}  # worker -> the file it is on
        self._finished = 0
        self._pending_failures: list[Failed] = []
        self._restarts_left = 2 * max(1, workers)  # a worker that dies at start must not respawn for ever
        for w in range(min(workers, len(self._items)) or 0):
            self._start(w)
        self.exhausted = not self._items

    def _start(self, worker: int) -> None:
        self._jobs.put(None)  # one stop marker per worker, after the files
        proc = self._ctx.Process(target=_worker_main, name=f"omnibatch-decode-{worker}", daemon=True,
                                 args=(worker, self._task, self._items, self._prober, self._jobs, self._events))
        proc.start()
        self._procs[worker] = proc
        self._current[worker] = None

    def poll(self, timeout_s: float = 0.0) -> Event | None:
        if self._pending_failures:
            return self._note(self._pending_failures.pop())
        if self.exhausted:
            return None
        try:
            event = self._events.get(timeout=timeout_s) if timeout_s > 0 else self._events.get_nowait()
        except queue.Empty:
            self._check_workers()
            return self._note(self._pending_failures.pop()) if self._pending_failures else None
        return self._note(event)

    def _note(self, event: Event) -> Event:
        if isinstance(event, Started):
            self._current[event.worker] = event.seq
        elif isinstance(event, Ended | Failed):
            for w, seq in self._current.items():
                if seq == event.seq:
                    self._current[w] = None
            self._finished += 1
            self.exhausted = self._finished == len(self._items)
        return event

    def _check_workers(self) -> None:
        """A worker that died (killed, out of memory) fails its file; a new worker takes its place."""
        for w, proc in list(self._procs.items()):
            if proc.is_alive():
                continue
            seq = self._current.get(w)
            if proc.exitcode == 0:
                continue
            if seq is not None:
                self._pending_failures.append(
                    Failed(seq, "decode", f"the decode worker died (exit code {proc.exitcode}) on this file"))
                self._current[w] = None
            del self._procs[w]
            if self._restarts_left > 0:
                self._restarts_left -= 1
                self._start(w)
            elif not self._procs:
                raise OmnibatchError(f"every decode worker died (the last with exit code {proc.exitcode})")

    def close(self) -> None:
        for proc in self._procs.values():
            if proc.is_alive():
                proc.terminate()
        for proc in self._procs.values():
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
        for q in (self._events, self._jobs):
            q.cancel_join_thread()
            q.close()


def open_source(task: Task, items: Sequence[MediaItem], workers: int, *, max_queued: int = 8,
                prober: Prober = probe_media) -> InlineSource | ProcessSource:
    """Decode events for `items`: from `workers` processes, or inline when `workers` is 0."""
    if workers <= 0:
        return InlineSource(task, items, prober)
    return ProcessSource(task, items, workers, max_queued=max_queued, prober=prober)

"""Decode ahead of the engine: worker processes that each stream one file at a time.

A worker probes a file, runs the task's first pass over it (one ffmpeg stream:
VAD, online cuts, each region's samples) and sends every region request out
the moment it is decoded, then says how many there were. Events from all
workers end in one bounded queue, so a worker that runs ahead of the engine
blocks instead of filling memory: what is held is the queue, not the file.

`workers=0` runs the same events inline in the calling process, one event per
`poll`, for tests and debugging.

`cancel(seq)` stops the decoding of a file that has already failed (a region the
engine refused, say): its worker ends the file's ffmpeg at the next region and
moves on, so a failed file stops costing CPU.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait

from omnibatch.errors import OmnibatchError
from omnibatch.pipeline.tasks import RegionRequest, Task
from omnibatch.records import MediaInfo, MediaItem

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2)


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
    stage: str  # "fetch" | "probe" | "decode"
    error: str


Event = Probed | Decoded | Ended | Failed


def describe(exc: BaseException) -> str:
    if isinstance(exc, OmnibatchError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def probe_media(item: MediaItem) -> MediaInfo:
    from omnibatch.media import probe

    return probe(item.path)


Prober = Callable[[MediaItem], MediaInfo]


def decode_events(task: Task, seq: int, item: MediaItem, prober: Prober = probe_media,
                  max_duration_s: float | None = None) -> Iterator[Event]:
    """Every event of one file's first pass, in order; failures become a Failed event.

    A file that probes longer than `max_duration_s` fails at once, before any decoding.
    An item that is not a local file (a remote object, a dataset cell) is first staged to a
    private local file (omnibatch/media/staging.py), removed before its last event is sent.
    """
    from omnibatch.media.staging import staged

    with ExitStack() as stack:
        try:
            local = stack.enter_context(staged(item))
        except Exception as exc:  # noqa: BLE001 - one bad file never stops a run
            stack.close()
            yield Failed(seq, "fetch", describe(exc))
            return
        for event in _local_events(task, seq, local, prober, max_duration_s):
            if isinstance(event, Ended | Failed):
                stack.close()  # the staged copy goes before the worker takes its next file
            yield event


def _local_events(task: Task, seq: int, item: MediaItem, prober: Prober,
                  max_duration_s: float | None) -> Iterator[Event]:
    try:
        info = prober(item)
    except Exception as exc:  # noqa: BLE001 - one bad file never stops a run
        yield Failed(seq, "probe", describe(exc))
        return
    if max_duration_s and (info.duration_s or 0.0) > max_duration_s:
        yield Failed(seq, "probe", too_long(info.duration_s, max_duration_s))
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


def too_long(duration_s: float, limit_s: float) -> str:
    return (f"the file says it lasts {duration_s / 3600:.1f} h, more than --max-duration "
            f"{limit_s / 3600:g} h: not decoded. Raise --max-duration if it really is that long.")


class InlineSource:
    """The decode pass in this process, one event per poll."""

    def __init__(self, task: Task, items: Sequence[MediaItem], prober: Prober = probe_media,
                 max_duration_s: float | None = None) -> None:
        self._task, self._items, self._prober = task, list(items), prober
        self._max_duration_s = max_duration_s
        self._seq = -1
        self._events: Iterator[Event] = iter(())
        self.exhausted = not self._items

    def poll(self, timeout_s: float = 0.0) -> Event | None:
        while not self.exhausted:
            event = next(self._events, None)
            if event is not None:
                return event
            self._seq += 1
            if self._seq == len(self._items):
                self.exhausted = True
            else:
                self._events = decode_events(self._task, self._seq, self._items[self._seq], self._prober,
                                             self._max_duration_s)
        return None

    def cancel(self, seq: int) -> None:
        if seq == self._seq:
            self._events.close()  # its ffmpeg ends with the generator
            self._events = iter([Ended(seq, -1)])

    def close(self) -> None:
        close = getattr(self._events, "close", None)
        if close is not None:
            close()


@dataclass(frozen=True)
class Cancel:
    """Main -> worker: stop decoding file `seq` (it failed)."""

    seq: int


def _worker_main(task: Task, items: Sequence[MediaItem], prober: Prober, max_duration_s: float | None,
                 jobs: Connection, events: Connection) -> None:
    for s in STOP_SIGNALS:  # the main process decides when everyone stops
        signal.signal(s, signal.SIG_IGN)
    _die_with_parent()
    try:
        while (seq := jobs.recv()) is not None:
            if isinstance(seq, Cancel):
                continue  # for a file already done
            file_events = decode_events(task, seq, items[seq], prober, max_duration_s)
            for event in file_events:
                events.send(event)
                if isinstance(event, Ended | Failed):
                    break  # the next file's number may follow at once: it is read by recv() above
                if jobs.poll() and _cancelled(jobs, seq):
                    file_events.close()  # ends the file's ffmpeg
                    events.send(Ended(seq, -1))
                    break
    except (EOFError, BrokenPipeError):
        pass  # the main process has gone or closed the pool


def _cancelled(jobs: Connection, seq: int) -> bool:
    """Before a worker has sent a file's last event, the only messages that reach it are cancels
    (the next file is sent once this one has ended); a cancel for an earlier file is stale."""
    found = False
    while jobs.poll():
        message = jobs.recv()
        found = found or (isinstance(message, Cancel) and message.seq == seq)
    return found


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


@dataclass
class _Worker:
    proc: multiprocessing.Process
    jobs: Connection  # main -> worker: file numbers, None to stop
    events: Connection  # worker -> main
    seq: int | None = None  # the file it is on
    send_lock: threading.Lock = field(default_factory=threading.Lock)  # the reader and cancel() both send


class ProcessSource:
    """`workers` decode processes (spawned: the main process may hold torch and engine threads).

    Each worker has pipes of its own, so a worker that dies (killed, out of memory) can
    corrupt nothing the others use: its file fails, and a new worker takes its place. A
    reader thread moves events from the pipes into a bounded queue; when that is full it
    stops reading, the pipes fill, and the workers wait.
    """

    def __init__(self, task: Task, items: Sequence[MediaItem], workers: int, *, max_queued: int = 8,
                 prober: Prober = probe_media, max_duration_s: float | None = None) -> None:
        self._ctx = multiprocessing.get_context("spawn")
        self._task, self._prober, self._max_duration_s = task, prober, max_duration_s
        self._items = list(items)
        self._next = 0  # the next file to hand out
        self._queue: queue.Queue[Event] = queue.Queue(maxsize=max(2, max_queued))
        self._workers: list[_Worker] = []
        self._restarts_left = 2 * max(1, workers)  # a worker that dies at start must not respawn for ever
        self._finished = 0
        self._closing = threading.Event()
        self.exhausted = not self._items
        for _ in range(min(workers, len(self._items))):
            self._workers.append(self._start())
        self._reader = threading.Thread(target=self._pump, name="omnibatch-decode-reader", daemon=True)
        self._reader.start()

    def _start(self) -> _Worker:
        job_recv, job_send = self._ctx.Pipe(duplex=False)
        event_recv, event_send = self._ctx.Pipe(duplex=False)
        proc = self._ctx.Process(target=_worker_main, name="omnibatch-decode", daemon=True,
                                 args=(self._task, self._items, self._prober, self._max_duration_s,
                                       job_recv, event_send))
        proc.start()
        job_recv.close()
        event_send.close()
        worker = _Worker(proc, job_send, event_recv)
        self._hand_out(worker)
        return worker

    def _hand_out(self, worker: _Worker) -> None:
        worker.seq = self._next if self._next < len(self._items) else None
        if worker.seq is not None:
            self._next += 1
        self._send(worker, worker.seq)

    def _send(self, worker: _Worker, message: int | Cancel | None) -> None:
        try:
            with worker.send_lock:
                worker.jobs.send(message)
        except (BrokenPipeError, OSError):
            pass  # it has died; the reader sees its pipe close

    def cancel(self, seq: int) -> None:
        for worker in list(self._workers):
            if worker.seq == seq:
                self._send(worker, Cancel(seq))

    def _pump(self) -> None:
        """The reader thread: events in, files handed out, dead workers replaced."""
        while not self._closing.is_set():
            live = {w.events: w for w in self._workers if not w.events.closed}
            if not live:
                return
            for conn in wait(list(live), timeout=0.5):
                worker = live[conn]
                try:
                    event = conn.recv()
                except (EOFError, OSError):
                    self._lost(worker)
                    continue
                if isinstance(event, Ended | Failed):
                    self._hand_out(worker)
                self._put(event)

    def _lost(self, worker: _Worker) -> None:
        worker.events.close()
        worker.proc.join(timeout=5)
        code = worker.proc.exitcode
        if worker.seq is not None:
            self._put(Failed(worker.seq, "decode", f"the decode worker died (exit code {code}) on this file"))
        self._workers.remove(worker)
        if self._next < len(self._items) and self._restarts_left > 0:
            self._restarts_left -= 1
            self._workers.append(self._start())
        elif self._next < len(self._items) and not self._workers:
            for seq in range(self._next, len(self._items)):  # nobody is left to decode them
                self._put(Failed(seq, "decode", f"every decode worker died (the last with exit code {code})"))
            self._next = len(self._items)

    def _put(self, event: Event) -> None:
        while not self._closing.is_set():
            try:
                self._queue.put(event, timeout=0.5)
                return
            except queue.Full:
                continue

    def poll(self, timeout_s: float = 0.0) -> Event | None:
        if self.exhausted:
            return None
        try:
            event = self._queue.get(timeout=timeout_s) if timeout_s > 0 else self._queue.get_nowait()
        except queue.Empty:
            return None
        if isinstance(event, Ended | Failed):
            self._finished += 1
            self.exhausted = self._finished == len(self._items)
        return event

    def close(self) -> None:
        self._closing.set()
        self._reader.join(timeout=5)  # it wakes at least every 0.5 s; then nobody starts workers
        for w in self._workers:
            if w.proc.is_alive():
                w.proc.terminate()
        for w in self._workers:
            w.proc.join(timeout=5)
            if w.proc.is_alive():
                w.proc.kill()
        for w in self._workers:
            w.jobs.close()
            w.events.close()


def open_source(task: Task, items: Sequence[MediaItem], workers: int, *, max_queued: int = 8,
                prober: Prober = probe_media, max_duration_s: float | None = None) -> InlineSource | ProcessSource:
    """Decode events for `items`: from `workers` processes, or inline when `workers` is 0."""
    if workers <= 0:
        return InlineSource(task, items, prober, max_duration_s)
    return ProcessSource(task, items, workers, max_queued=max_queued, prober=prober,
                         max_duration_s=max_duration_s)

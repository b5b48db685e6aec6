"""Decode ahead of the engine, in worker processes, through a bounded window.

Items are planned (probe + cut points) a few at a time ahead of use, and their
regions are loaded (decoded into arrays) while at most `max_pending_s` seconds
of media are held or in flight, so memory stays flat however long the
manifest or a single file is. Events come out in item order.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass, field

from omnibatch.errors import OmnibatchError
from omnibatch.pipeline.tasks import Task
from omnibatch.records import Chunk, Generation, MediaInfo, MediaItem, Request


@dataclass
class ItemState:
    """A file in flight: its regions, and what the engine has said about each so far."""

    item: MediaItem
    info: MediaInfo | None = None
    chunks: list[Chunk] = field(default_factory=list)
    generations: dict[int, Generation] = field(default_factory=dict)
    error: str | None = None

    @property
    def complete(self) -> bool:
        return self.error is not None or len(self.generations) == len(self.chunks)


@dataclass
class Planned:
    state: ItemState


@dataclass
class Loaded:
    state: ItemState
    chunk: Chunk
    request: Request | None  # None when loading failed; the state then carries the error


def describe(exc: BaseException) -> str:
    if isinstance(exc, OmnibatchError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def plan_item(task: Task, item: MediaItem) -> tuple[MediaInfo, list[Chunk]]:
    from omnibatch.media import probe

    info = probe(item.path)
    return info, task.plan(item, info)


def load_chunk(task: Task, item: MediaItem, info: MediaInfo, chunk: Chunk) -> Request:
    return task.load(item, info, chunk)


class InlineExecutor(Executor):
    """Runs each job at submit time: for `workers=0`, tests and debugging."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller through the future
            future.set_exception(exc)
        return future


def make_executor(workers: int) -> Executor:
    if workers <= 0:
        return InlineExecutor()
    # spawn: the main process may hold torch and engine threads that must not be forked.
    # Workers ignore stop signals (Slurm sends SIGTERM to every process): the main process
    # decides when to stop, after its wave.
    from omnibatch.run.signals import ignore_stop_signals

    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=ignore_stop_signals)


def iter_loaded(task: Task, items: Sequence[MediaItem], executor: Executor, *,
                max_pending_s: float = 1800.0, plan_ahead: int = 4) -> Iterator[Planned | Loaded]:
    """Yield, in item order, each item once planned and then each of its regions once loaded."""
    plans: deque[tuple[MediaItem, Future]] = deque()
    loads: deque[tuple[ItemState, Chunk, Future]] = deque()
    queue: deque[tuple[ItemState, Chunk]] = deque()  # planned regions not yet submitted
    next_item = 0
    pending_s = 0.0

    def submit_plans() -> None:
        nonlocal next_item
        while next_item < len(items) and len(plans) < plan_ahead:
            item = items[next_item]
            plans.append((item, executor.submit(plan_item, task, item)))
            next_item += 1

    def submit_loads() -> None:
        nonlocal pending_s
        while queue and (not loads or pending_s < max_pending_s):
            state, chunk = queue.popleft()
            loads.append((state, chunk, executor.submit(load_chunk, task, state.item, state.info, chunk)))
            pending_s += chunk.duration_s

    def take_plan() -> ItemState:
        item, future = plans.popleft()
        submit_plans()
        state = ItemState(item)
        try:
            state.info, state.chunks = future.result()
        except Exception as exc:  # noqa: BLE001 - one bad file never stops a run
            state.error = describe(exc)
        if state.error is None:
            queue.extend((state, c) for c in state.chunks)
        return state

    submit_plans()
    while plans or loads or queue:
        # Plan the next file once this one's regions are all submitted and there is room.
        if not queue and plans and (not loads or pending_s < max_pending_s):
            yield Planned(take_plan())
            submit_loads()
            continue
        submit_loads()
        state, chunk, future = loads.popleft()
        pending_s -= chunk.duration_s
        try:
            request = future.result()
        except Exception as exc:  # noqa: BLE001
            if state.error is None:
                state.error = f"region {chunk.start_s:.1f}-{chunk.end_s:.1f} s: {describe(exc)}"
            request = None
        yield Loaded(state, chunk, request)

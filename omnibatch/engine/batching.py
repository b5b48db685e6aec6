"""Batch engines on the streaming contract: a queue of requests, and the choice of the next batch.

The transformers and whisper engines run whole batches: each row is padded to
the longest, and a batch returns when its last row is done. The feed keeps a few
batches' worth of requests submitted (`BATCHES_IN_FLIGHT`), so that each
`step()` can draw one batch of similar lengths from the queue instead of taking
requests in the order they came. `choose_batch` makes that choice; it is a pure
function over what waits, tested without a model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass, replace

from omnibatch.engine.base import generate_all
from omnibatch.errors import InputError
from omnibatch.records import Generation, Request

BATCHES_IN_FLIGHT = 4  # enough waiting requests to find full batches of similar length
MAX_WAIT_BATCHES = 8  # a request passed over by this many batches is served next, whatever its length


@dataclass(frozen=True)
class BatchLimits:
    """How large one batch may be, and how long a request may be passed over."""

    batch_size: int
    max_batch_tokens: int | None = None  # padded size: the longest row times the rows
    max_wait: int = MAX_WAIT_BATCHES

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise InputError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.max_batch_tokens is not None and self.max_batch_tokens < 1:
            raise InputError(f"max_batch_tokens must be at least 1, got {self.max_batch_tokens}")
        if self.max_wait < 0:
            raise InputError(f"max_wait must be at least 0, got {self.max_wait}")


@dataclass(frozen=True)
class Waiting:
    """What the chooser knows of one queued request."""

    key: Hashable  # only requests with equal keys can share a batch
    size: int  # its estimated length (tokens, samples): a batch pads every row to its longest
    age: int = 0  # batches run since it was queued
    alone: bool = False  # it always runs in a batch of its own


@dataclass(frozen=True)
class _Window:
    members: tuple[int, ...]  # indices into the waiting list, shortest first
    waste: float  # share of the padded batch that is padding
    full: bool  # as many rows as the limits allow at this length


def choose_batch(waiting: Sequence[Waiting], limits: BatchLimits) -> list[int]:
    """Indices into `waiting` of the next batch: one key, similar sizes, within `limits`.

    A full batch (`batch_size` rows, or as many as `max_batch_tokens` allows at its
    length) with the least padding goes first. When there is none, or once the
    oldest request has been passed over `max_wait` times, the batch is the largest
    one around the oldest request, with the least padding; so every request is
    served within `max_wait` batches, and a short queue is never left waiting.
    """
    if not waiting:
        return []
    windows = list(_windows(waiting, limits))
    oldest = max(range(len(waiting)), key=lambda i: (waiting[i].age, -i))  # ties: the first queued
    if waiting[oldest].age < limits.max_wait:
        full = [w for w in windows if w.full]
        if full:
            best = min(full, key=lambda w: (w.waste, -max(waiting[i].age for i in w.members), min(w.members)))
            return list(best.members)
    around = [w for w in windows if oldest in w.members]
    best = min(around, key=lambda w: (-len(w.members), w.waste, min(w.members)))
    return list(best.members)


def _windows(waiting: Sequence[Waiting], limits: BatchLimits) -> Iterator[_Window]:
    """For each key's requests sorted by size, the longest batch that starts at each one."""
    groups: dict[Hashable, list[int]] = {}
    for i, item in enumerate(waiting):
        if item.alone:
            yield _Window((i,), 0.0, True)
        else:
            groups.setdefault(item.key, []).append(i)
    budget = limits.max_batch_tokens
    for members in groups.values():
        members.sort(key=lambda i: (waiting[i].size, i))
        sizes = [max(0, waiting[i].size) for i in members]
        for start in range(len(members)):
            end = start + 1  # one request always fits, however long
            while end < len(members) and end - start < limits.batch_size:
                if budget is not None and sizes[end] * (end - start + 1) > budget:
                    break
                end += 1
            count, longest = end - start, sizes[end - 1]
            padded = longest * count
            waste = (padded - sum(sizes[start:end])) / padded if padded else 0.0
            full = count >= limits.batch_size or (budget is not None and longest * (count + 1) > budget)
            yield _Window(tuple(members[start:end]), waste, full)


@dataclass
class _Queued:
    request: Request
    place: Waiting
    queued_at: int  # the engine's batch count when it was queued


class BatchingEngine(ABC):
    """The streaming contract (`omnibatch.engine.base.Engine`) for an engine that runs whole batches.

    `submit` only queues; each `step` either hands back what was answered without
    the model (refused requests, at once) or runs one batch chosen by `choose_batch`.
    A subclass calls `__init__` with its limits and supplies the three hooks below.
    """

    def __init__(self, limits: BatchLimits) -> None:
        self.batch_limits = limits
        self._queue: list[_Queued] = []
        self._answered: list[Generation] = []
        self._ids: set[str] = set()
        self._batches_run = 0

    # -- hooks -----------------------------------------------------------------------------

    @abstractmethod
    def _answer_now(self, request: Request) -> Generation | None:
        """The Generation of a request that needs no model (refused, or nothing in it), else None."""

    @abstractmethod
    def _place(self, request: Request) -> Waiting:
        """Its batch key, size and whether it runs alone (age is filled in by the queue)."""

    @abstractmethod
    def _run_chosen(self, batch: list[Request], key: Hashable) -> list[Generation]:
        """Run one chosen batch (one key); one Generation per request, a failure as `error`."""

    # -- the Engine contract ---------------------------------------------------------------

    @property
    def max_in_flight(self) -> int:
        return BATCHES_IN_FLIGHT * self.batch_limits.batch_size

    @property
    def in_flight(self) -> int:
        return len(self._ids)

    def submit(self, requests: Sequence[Request]) -> None:
        for request in requests:
            if request.id in self._ids:
                raise ValueError(f"request {request.id!r} is already in flight")
            answer = self._answer_now(request)
            self._ids.add(request.id)
            if answer is not None:
                self._answered.append(answer)
            else:
                self._queue.append(_Queued(request, self._place(request), self._batches_run))

    def step(self) -> list[Generation]:
        if self._answered:
            done, self._answered = self._answered, []
        elif self._queue:
            waiting = [replace(q.place, age=self._batches_run - q.queued_at) for q in self._queue]
            chosen = choose_batch(waiting, self.batch_limits)
            batch = [self._queue[i] for i in chosen]
            taken = set(chosen)
            self._queue = [q for i, q in enumerate(self._queue) if i not in taken]
            self._batches_run += 1
            done = self._run_chosen([q.request for q in batch], batch[0].place.key)
        else:
            return []
        for generation in done:
            self._ids.discard(generation.request_id)
        return done

    def generate(self, requests: Sequence[Request]) -> list[Generation]:
        """Every request's Generation, in the order given (blocking; for tests and one-off calls)."""
        return generate_all(self, requests)

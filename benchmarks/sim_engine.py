"""A simulated Thinker engine for the feed benchmark: it sleeps as long as a real one would work.

`SimulatedEngine` keeps the contract of `omnibatch.engine.base.Engine` (`submit`,
`step`, `in_flight`, `max_in_flight`, `close`). Each `step()` takes up to
`batch_size` queued requests, in the order submitted, and sleeps for

    per_call_s + (audio seconds of the batch) / rate_audio_s_per_s

without using the CPU, so the decode workers have the machine to themselves and
what the benchmark sees is how well the pipeline keeps the engine fed. It
answers each request with deterministic text (a few words per second of audio,
unique to the request, so stitching has real words to join) and records what
the benchmark reports: busy seconds, requests in flight at each step, the span
from the first submit to the last result, and the number of calls.
"""

from __future__ import annotations

import math
import time
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from omnibatch.records import Generation, Request

SAMPLE_RATE = 16000
TEXT_REQUEST_S = 1.0  # what a request without audio (a follow-up over text) costs, in audio seconds
WORDS_PER_S = 2.5  # about the pace of read speech


def audio_seconds(request: Request) -> float:
    """The audio a request carries (a video request counts by its audio track); text-only counts 1 s."""
    if request.audio is not None and request.audio.size:
        return request.audio.size / SAMPLE_RATE
    return TEXT_REQUEST_S


@dataclass
class SimStats:
    """What the engine saw. Times are `time.perf_counter()` readings of the process it ran in."""

    calls: int = 0
    requests: int = 0
    audio_s: float = 0.0  # request audio seconds processed
    busy_s: float = 0.0  # seconds asleep in step(): the engine's work
    first_submit: float | None = None
    first_step: float | None = None
    last_result: float | None = None  # when the last step that returned generations ended
    in_flight_at_step: list[int] = field(default_factory=list)  # in flight when each working step began

    @property
    def span_s(self) -> float:
        """From the first request submitted to the last result returned."""
        if self.first_submit is None or self.last_result is None:
            return 0.0
        return self.last_result - self.first_submit

    @property
    def busy_fraction(self) -> float:
        return self.busy_s / self.span_s if self.span_s > 0 else 0.0

    @property
    def mean_in_flight(self) -> float:
        steps = self.in_flight_at_step
        return sum(steps) / len(steps) if steps else 0.0

    def as_dict(self) -> dict:
        return {
            "calls": self.calls, "requests": self.requests, "audio_s": round(self.audio_s, 2),
            "busy_s": round(self.busy_s, 3), "span_s": round(self.span_s, 3),
            "busy_fraction": round(self.busy_fraction, 4), "mean_in_flight": round(self.mean_in_flight, 2),
            "max_in_flight_seen": max(self.in_flight_at_step, default=0),
            "min_in_flight_seen": min(self.in_flight_at_step, default=0),
            "first_submit": self.first_submit, "first_step": self.first_step, "last_result": self.last_result,
        }  # fmt: skip


class SimulatedEngine:
    """An engine that processes `rate_audio_s_per_s` seconds of audio per second, `batch_size` at a time."""

    name = "simulated"
    model = "simulated"

    def __init__(self, rate_audio_s_per_s: float, per_call_s: float, batch_size: int, max_in_flight: int, *,
                 clock: Callable[[], float] = time.perf_counter,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not (rate_audio_s_per_s > 0 and math.isfinite(rate_audio_s_per_s)):
            raise ValueError(f"rate_audio_s_per_s must be a positive number, got {rate_audio_s_per_s}")
        if per_call_s < 0:
            raise ValueError(f"per_call_s must be >= 0, got {per_call_s}")
        if batch_size < 1 or max_in_flight < 1:
            raise ValueError(f"batch_size and max_in_flight must be >= 1, got {batch_size}, {max_in_flight}")
        self.rate = rate_audio_s_per_s
        self.per_call_s = per_call_s
        self.batch_size = batch_size
        self._max_in_flight = max_in_flight
        self._clock, self._sleep = clock, sleep
        self._queue: deque[Request] = deque()
        self.stats = SimStats()
        self.closed = False

    @property
    def max_in_flight(self) -> int:
        return self._max_in_flight

    @property
    def in_flight(self) -> int:
        return len(self._queue)

    def submit(self, requests: Sequence[Request]) -> None:
        if self.closed:
            raise RuntimeError("the simulated engine is closed")
        if requests and self.stats.first_submit is None:
            self.stats.first_submit = self._clock()
        self._queue.extend(requests)

    def step(self) -> list[Generation]:
        if not self._queue:
            return []
        self.stats.in_flight_at_step.append(len(self._queue))
        batch = [self._queue.popleft() for _ in range(min(self.batch_size, len(self._queue)))]
        seconds = [audio_seconds(r) for r in batch]
        work_s = self.per_call_s + sum(seconds) / self.rate
        started = self._clock()
        if self.stats.first_step is None:
            self.stats.first_step = started
        self._sleep(work_s)
        ended = self._clock()
        self.stats.busy_s += ended - started  # what the sleep really took, oversleeping included
        self.stats.calls += 1
        self.stats.requests += len(batch)
        self.stats.audio_s += sum(seconds)
        self.stats.last_result = ended
        return [answer(r, s) for r, s in zip(batch, seconds, strict=True)]

    def close(self) -> None:
        self.closed = True

    def generate(self, requests: Sequence[Request]) -> list[Generation]:
        """The old blocking contract (`omnibatch.pipeline.runner` calls it), for `feed.py --runner old`.

        The same loop as `omnibatch.engine.base.generate_all`, kept here so that this module also runs
        against a tree whose engine contract predates `step()`."""
        self.submit(requests)
        done: dict[str, Generation] = {}
        while self.in_flight:
            done.update((g.request_id, g) for g in self.step())
        return [done[r.id] for r in requests]


def answer(request: Request, seconds: float) -> Generation:
    """Words `<tag>w<k>`, WORDS_PER_S per second, the tag a hash of the request id: deterministic,
    and no two requests alike, so a stitcher never finds a false overlap at a seam."""
    n = max(1, round(seconds * WORDS_PER_S))
    tag = format(zlib.crc32(request.id.encode()), "08x")
    words = [f"{tag}w{k}" for k in range(n)]
    return Generation(request_id=request.id, text=" ".join(words), output_tokens=n, finish_reason="stop")

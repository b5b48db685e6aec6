"""The engine queue: requests in as soon as they are ready, generations out as they finish.

`EngineFeed` owns the engine for the scheduler: it builds it on first use (a
run whose files all fail never loads a model), keeps the number of requests in
flight within the engine's own bound, and counts what the engine did (busy
time, calls, tokens, the in-flight level at each step) so a run can tell
whether the engine was ever left waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from omnibatch.engine.base import Engine
from omnibatch.errors import EngineError, OmnibatchError
from omnibatch.records import Generation, Request

# Before the engine exists (and says its bound), decode may run this far ahead.
DEFAULT_BOUND = 64


@dataclass
class FeedStats:
    calls: int = 0
    busy_s: float = 0.0  # time inside engine.step()
    first_submit: float | None = None  # perf_counter times
    last_result: float | None = None
    in_flight_sum: int = 0  # summed over steps: mean = in_flight_sum / calls
    bound: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0
    requests: int = 0
    truncated: int = 0  # generations that stopped at their token limit (finish_reason "length")

    @property
    def mean_in_flight(self) -> float:
        return self.in_flight_sum / self.calls if self.calls else 0.0

    @property
    def busy_fraction(self) -> float:
        """Share of the time from the first request to the last result that the engine worked."""
        if self.first_submit is None or self.last_result is None:
            return 0.0
        span = self.last_result - self.first_submit
        return min(1.0, self.busy_s / span) if span > 0 else 1.0


class EngineFeed:
    def __init__(self, factory: Callable[[], Engine]) -> None:
        self._factory = factory
        self.engine: Engine | None = None
        self.stats = FeedStats()

    @property
    def bound(self) -> int:
        return max(1, int(self.engine.max_in_flight)) if self.engine is not None else DEFAULT_BOUND

    @property
    def in_flight(self) -> int:
        return self.engine.in_flight if self.engine is not None else 0

    def room(self) -> int:
        return max(0, self.bound - self.in_flight)

    def ensure(self) -> Engine:
        if self.engine is None:
            self.engine = self._factory()
            self.stats.bound = self.bound
        return self.engine

    def submit(self, requests: Sequence[Request]) -> None:
        if not requests:
            return
        engine = self.ensure()
        if self.stats.first_submit is None:
            self.stats.first_submit = time.perf_counter()
        self.stats.requests += len(requests)
        self._call(lambda: engine.submit(requests))

    def step(self) -> list[Generation]:
        if self.engine is None or self.engine.in_flight == 0:
            return []
        engine = self.engine
        level = engine.in_flight
        t0 = time.perf_counter()
        done = self._call(engine.step)
        t1 = time.perf_counter()
        self.stats.calls += 1
        self.stats.busy_s += t1 - t0
        self.stats.in_flight_sum += level
        if done:
            self.stats.last_result = t1
        for g in done:
            self.stats.prompt_tokens += g.prompt_tokens
            self.stats.output_tokens += g.output_tokens
            self.stats.truncated += g.truncated
        return done

    def close(self) -> None:
        engine, self.engine = self.engine, None
        if engine is not None:
            engine.close()

    def _call(self, work):
        try:
            return work()
        except OmnibatchError:
            raise
        except Exception as exc:
            name = self.engine.name if self.engine is not None else "engine"
            raise EngineError(f"the {name} engine failed: {type(exc).__name__}: {exc}. Finished rows are "
                              "kept; rerun the same command to resume.") from exc

"""The contract every Thinker engine keeps: a stream of requests in, generations out as they finish.

The scheduler keeps up to `max_in_flight` requests submitted, calls `step()` to
let the engine work, and takes back whatever finished, by request id, in any
order. An engine never waits for the scheduler: as long as requests are in
flight, `step()` runs the next batch (transformers, whisper) or the next
scheduler step of a running engine (vLLM, which takes new requests between
steps). `generate_all` is the blocking convenience on top, for tests and
one-off calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from omnibatch.records import Generation, Request


@runtime_checkable
class Engine(Protocol):
    name: str  # "transformers", "vllm", "whisper", ...
    model: str  # the model path or id, as written to the `model` column

    @property
    def max_in_flight(self) -> int:
        """How many requests the feed should keep submitted so the engine never runs dry.

        vLLM: a multiple of its running-sequence limit; batch engines: a few batches,
        so each batch can be drawn from requests of similar length.
        """
        ...

    @property
    def in_flight(self) -> int:
        """Requests submitted whose generation has not been returned by `step()` yet."""
        ...

    def submit(self, requests: Sequence[Request]) -> None:
        """Queue requests. Never blocks on model work; a request the engine refuses comes back
        from a later `step()` as a Generation with `error` set."""
        ...

    def step(self) -> list[Generation]:
        """Do one unit of work (a batch, an engine step) and return the generations that finished.

        Returns [] at once when nothing is in flight. Raises EngineError only when the
        engine itself has failed (a rejected request is a Generation with `error`).
        """
        ...

    def close(self) -> None: ...


def generate_all(engine: Engine, requests: Sequence[Request]) -> list[Generation]:
    """Submit `requests`, step until all are back, and return them in the order given."""
    ids = [r.id for r in requests]
    if len(set(ids)) != len(ids):
        raise ValueError("request ids must be unique within one call")
    engine.submit(requests)
    done: dict[str, Generation] = {}
    while len(done) < len(ids):
        finished = engine.step()
        if not finished and engine.in_flight == 0:
            missing = [i for i in ids if i not in done]
            raise RuntimeError(f"the {engine.name} engine dropped {len(missing)} request(s), e.g. {missing[0]}")
        for generation in finished:
            done[generation.request_id] = generation
    return [done[i] for i in ids]

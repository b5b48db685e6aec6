"""The streaming engine contract for batch engines: the choice of the next batch, and the queue around it.

No model here: `choose_batch` is pure, and the queue is tested through a small
deterministic engine that answers each request with its prompt upper-cased.
"""

from __future__ import annotations

import pytest

from omnibatch.engine.base import Engine, generate_all
from omnibatch.engine.batching import BATCHES_IN_FLIGHT, BatchingEngine, BatchLimits, Waiting, choose_batch
from omnibatch.errors import InputError
from omnibatch.records import Generation, Request


def sizes_of(waiting, chosen):
    return sorted(waiting[i].size for i in chosen)


# -- choose_batch -------------------------------------------------------------------------------


def test_a_batch_holds_one_key_only():
    waiting = [Waiting("a", 10), Waiting("b", 10), Waiting("a", 11), Waiting("b", 11), Waiting("a", 12)]
    chosen = choose_batch(waiting, BatchLimits(batch_size=8))
    assert {waiting[i].key for i in chosen} == {"a"} and sorted(chosen) == [0, 2, 4]


def test_a_full_batch_of_similar_lengths_goes_first():
    sizes = [100, 10, 101, 11, 102, 12, 103, 13, 55]
    waiting = [Waiting("k", s) for s in sizes]
    limits = BatchLimits(batch_size=4)
    first = choose_batch(waiting, limits)
    assert sizes_of(waiting, first) == [100, 101, 102, 103]  # the least padding of the full windows
    rest = [w for i, w in enumerate(waiting) if i not in first]
    assert sizes_of(rest, choose_batch(rest, limits)) == [10, 11, 12, 13]  # not [11, 12, 13, 55]


def test_a_full_batch_wins_over_an_older_partial_one_until_the_age_limit():
    limits = BatchLimits(batch_size=4, max_wait=3)
    odd = [Waiting("video", 50, age=2), Waiting("video", 60, age=2)]
    full = [Waiting("audio", 20 + i, age=0) for i in range(4)]
    assert sizes_of(odd + full, choose_batch(odd + full, limits)) == [20, 21, 22, 23]
    odd = [Waiting("video", 50, age=3), Waiting("video", 60, age=3)]
    assert sizes_of(odd + full, choose_batch(odd + full, limits)) == [50, 60]


def test_without_a_full_batch_the_oldest_request_is_served_at_once():
    waiting = [Waiting("b", 30, age=1), Waiting("a", 10, age=2), Waiting("a", 12, age=2), Waiting("b", 31)]
    chosen = choose_batch(waiting, BatchLimits(batch_size=8))
    assert sorted(chosen) == [1, 2]  # the oldest is the first of the age-2 ones, key "a"


def test_the_batch_around_the_oldest_is_as_large_as_allowed_with_the_least_padding():
    sizes = [10, 11, 12, 100, 101, 102, 500]
    waiting = [Waiting("k", s, age=9 if s == 101 else 0) for s in sizes]
    chosen = choose_batch(waiting, BatchLimits(batch_size=3, max_wait=5))
    assert sizes_of(waiting, chosen) == [100, 101, 102]


def test_the_token_budget_caps_the_padded_batch():
    limits = BatchLimits(batch_size=8, max_batch_tokens=100)
    waiting = [Waiting("k", s) for s in (30, 30, 30, 30, 60)]
    chosen = choose_batch(waiting, limits)
    assert sizes_of(waiting, chosen) == [30, 30, 30]  # 4 x 30 would pad to 120
    # One request longer than the whole budget still runs, alone.
    assert choose_batch([Waiting("k", 500)], limits) == [0]
    long_ones = [Waiting("k", 500), Waiting("k", 501)]
    assert len(choose_batch(long_ones, limits)) == 1


def test_a_request_that_runs_alone_gets_a_batch_of_its_own():
    waiting = [Waiting("k", 10), Waiting("k", 10_000, alone=True), Waiting("k", 11)]
    limits = BatchLimits(batch_size=2)
    assert choose_batch(waiting, limits) == [1]  # a full batch at once, with no padding
    assert sorted(choose_batch([waiting[0], waiting[2]], limits)) == [0, 1]


def test_nothing_waiting_nothing_chosen():
    assert choose_batch([], BatchLimits(batch_size=4)) == []


def test_limits_are_checked():
    with pytest.raises(InputError, match="batch_size"):
        BatchLimits(batch_size=0)
    with pytest.raises(InputError, match="max_batch_tokens"):
        BatchLimits(batch_size=2, max_batch_tokens=0)


# -- the queue, through a deterministic engine ---------------------------------------------------


class UpperEngine(BatchingEngine):
    """Answers a request with its prompt upper-cased; batches by prompt parity, sized by prompt length."""

    name = "upper"
    model = "none"

    def __init__(self, batch_size: int = 2, max_wait: int = 8) -> None:
        super().__init__(BatchLimits(batch_size, max_wait=max_wait))
        self.batches: list[list[str]] = []

    def _answer_now(self, request: Request) -> Generation | None:
        if not request.prompt:
            return Generation(request_id=request.id, text="", error="no prompt")
        return None

    def _place(self, request: Request) -> Waiting:
        return Waiting(key=len(request.prompt) % 2, size=len(request.prompt))

    def _run_chosen(self, batch: list[Request], key) -> list[Generation]:
        assert len({len(r.prompt) % 2 for r in batch}) == 1 and len(batch) <= self.batch_limits.batch_size
        self.batches.append([r.id for r in batch])
        return [Generation(request_id=r.id, text=r.prompt.upper(), finish_reason="stop") for r in batch]

    def close(self) -> None:
        pass


def requests_of(*prompts):
    return [Request(f"r{i}", p) for i, p in enumerate(prompts)]


def test_the_engine_keeps_the_contract():
    engine = UpperEngine(batch_size=3)
    assert isinstance(engine, Engine)
    assert engine.max_in_flight == BATCHES_IN_FLIGHT * 3
    assert engine.step() == [] and engine.in_flight == 0


def test_submit_queues_and_step_returns_batches_by_id():
    engine = UpperEngine(batch_size=2)
    reqs = requests_of("aa", "b", "cccc", "dd", "eee", None)
    engine.submit(reqs)
    assert engine.in_flight == 6 and engine.batches == []  # submit runs nothing
    first = engine.step()
    assert [(g.request_id, g.error) for g in first] == [("r5", "no prompt")]  # refusals come back at once
    assert engine.batches == [] and engine.in_flight == 5
    seen: dict[str, Generation] = {}
    while engine.in_flight:
        done = engine.step()
        assert 1 <= len(done) <= 2
        seen.update((g.request_id, g) for g in done)
        assert engine.in_flight == 5 - len(seen)
    texts = {i: g.text for i, g in seen.items()}
    assert texts == {"r0": "AA", "r1": "B", "r2": "CCCC", "r3": "DD", "r4": "EEE"}
    assert engine.batches[0] in (["r0", "r3"], ["r3", "r0"])  # a full pair of equal lengths first
    assert engine.step() == []


def test_a_request_id_in_flight_twice_is_refused():
    engine = UpperEngine()
    engine.submit(requests_of("a"))
    with pytest.raises(ValueError, match="already in flight"):
        engine.submit(requests_of("b"))
    engine.step()
    engine.submit(requests_of("b"))  # back from the engine: the id is free again
    assert engine.step()[0].text == "B"


def test_generate_returns_the_requests_in_the_order_given():
    engine = UpperEngine(batch_size=2)
    reqs = requests_of("x", "yy", "zzz", "", "ww")
    out = engine.generate(reqs)
    assert [g.request_id for g in out] == [r.id for r in reqs]
    assert [g.text for g in out] == ["X", "YY", "ZZZ", "", "WW"] and out[3].error == "no prompt"
    assert generate_all(engine, []) == [] and engine.in_flight == 0


def test_a_kept_full_queue_still_serves_an_odd_request_within_the_age_limit():
    """A feed that tops the queue up after every batch with even-length prompts never starves an odd one."""
    engine = UpperEngine(batch_size=2, max_wait=3)
    engine.submit([Request("odd", "abc")])
    counter = 0

    def top_up() -> None:
        nonlocal counter
        while engine.in_flight < engine.max_in_flight:
            engine.submit([Request(f"even-{counter}", "ab" * (1 + counter % 3))])
            counter += 1

    served_at = None
    for batch_number in range(10):
        top_up()
        done = engine.step()
        if any(g.request_id == "odd" for g in done):
            served_at = batch_number
            break
    assert served_at == 3  # passed over by three full batches, then served

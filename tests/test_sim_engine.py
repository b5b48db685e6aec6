"""The feed benchmark's simulated engine keeps the engine contract and accounts for its time."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from sim_engine import SimulatedEngine  # noqa: E402

from omnibatch.engine.base import Engine, generate_all  # noqa: E402
from omnibatch.records import Request  # noqa: E402


class FakeClock:
    """Sleeping advances the clock: the test takes no time and the figures are exact."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _requests(seconds: list[float]) -> list[Request]:
    return [Request(id=f"f#{i:05d}", prompt="x", audio=np.zeros(int(s * 16000), dtype=np.float32), index=i)
            for i, s in enumerate(seconds)]


def test_generate_all_batches_sleeps_and_records():
    clock = FakeClock()
    engine = SimulatedEngine(rate_audio_s_per_s=10.0, per_call_s=0.5, batch_size=2, max_in_flight=4,
                             clock=clock, sleep=clock.sleep)
    assert isinstance(engine, Engine)
    requests = [*_requests([10.0, 20.0, 4.0]), Request(id="text", prompt="summarize")]
    gens = generate_all(engine, requests)

    assert [g.request_id for g in gens] == [r.id for r in requests]
    assert all(g.finish_reason == "stop" and g.error is None for g in gens)
    assert len(gens[0].text.split()) == 25 and len(gens[1].text.split()) == 50  # 2.5 words per second
    assert gens[0].text.split()[0] != gens[1].text.split()[0]  # requests never share words
    assert gens == generate_all(SimulatedEngine(10.0, 0.5, 2, 4, clock=clock, sleep=clock.sleep), requests)

    s = engine.stats
    assert s.calls == 2 and s.requests == 4
    assert s.audio_s == pytest.approx(35.0)  # the text-only request counts 1 s
    assert s.busy_s == pytest.approx(0.5 + 3.0 + 0.5 + 0.5)  # per call + audio / rate
    assert s.span_s == pytest.approx(s.busy_s) and s.busy_fraction == pytest.approx(1.0)
    assert s.in_flight_at_step == [4, 2] and s.mean_in_flight == 3.0
    assert engine.in_flight == 0 and engine.step() == []


def test_idle_time_between_submits_lowers_the_busy_fraction():
    clock = FakeClock()
    engine = SimulatedEngine(rate_audio_s_per_s=1.0, per_call_s=0.0, batch_size=8, max_in_flight=8,
                             clock=clock, sleep=clock.sleep)
    engine.submit(_requests([1.0]))
    engine.step()
    clock.now += 1.0  # the feed ran dry for a second
    engine.submit(_requests([1.0]))
    engine.step()
    assert engine.stats.busy_fraction == pytest.approx(2.0 / 3.0)
    assert engine.generate(_requests([2.0]))[0].finish_reason == "stop"  # the old blocking contract


def test_refuses_nonsense_rates():
    with pytest.raises(ValueError):
        SimulatedEngine(0.0, 0.0, 1, 1)
    with pytest.raises(ValueError):
        SimulatedEngine(1.0, 0.0, 0, 1)

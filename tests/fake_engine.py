"""A deterministic engine for scheduler tests: it keeps the streaming contract and records what it saw.

It answers each request with text derived from the request alone (so a rerun
answers the same), returns a batch's results in a shuffled (seeded) order,
rejects the request ids it is told to, and checks the feed never puts more than
`max_in_flight` requests in flight.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from omnibatch.records import Generation, Request

SAMPLE_RATE = 16000


def answer_for(request: Request) -> str:
    """Words that depend only on what was asked: a few per second of audio, one hash word for text."""
    if request.audio is not None:
        seconds = request.audio.size / SAMPLE_RATE
        digest = hashlib.sha256(request.audio.tobytes()).hexdigest()[:6]
        return " ".join(f"w{digest}{k}" for k in range(max(1, int(seconds))))
    digest = hashlib.sha256((request.prompt or "").encode()).hexdigest()[:8]
    return f"summary {digest} of {len((request.prompt or '').split())} words."


def step_until_empty(engine) -> dict[str, Generation]:
    """Step a real or fake engine until nothing is in flight, checking the count as it falls;
    return the generations by request id."""
    got: dict[str, Generation] = {}
    start = engine.in_flight
    while engine.in_flight:
        done = engine.step()
        assert done, "a step with requests in flight runs a batch"
        got.update((g.request_id, g) for g in done)
        assert engine.in_flight == start - len(got)
    return got


@dataclass
class Submitted:
    id: str
    item_id: str
    step: str
    index: int
    at: int  # the engine's event counter when it was submitted


class FakeEngine:
    name = "fake"
    model = "fake-model"

    def __init__(self, *, batch_size: int = 4, bound: int = 8, reject: Sequence[str] = (), seed: int = 0) -> None:
        self.batch_size, self.bound = batch_size, bound
        self.reject = set(reject)
        self.queue: list[Request] = []
        self.submitted: list[Submitted] = []
        self.returned: list[tuple[str, int]] = []  # (request id, event counter)
        self.max_seen = 0
        self.closed = False
        self._clock = 0
        self._rng = random.Random(seed)

    @property
    def max_in_flight(self) -> int:
        return self.bound

    @property
    def in_flight(self) -> int:
        return len(self.queue)

    def submit(self, requests: Sequence[Request]) -> None:
        for r in requests:
            self._clock += 1
            self.submitted.append(Submitted(r.id, r.item_id, r.step, r.index, self._clock))
        self.queue.extend(requests)
        self.max_seen = max(self.max_seen, len(self.queue))
        if len(self.queue) > self.bound:
            raise AssertionError(f"{len(self.queue)} requests in flight, over the bound of {self.bound}")

    def step(self) -> list[Generation]:
        batch, self.queue = self.queue[: self.batch_size], self.queue[self.batch_size:]
        out = []
        for r in batch:
            self._clock += 1
            self.returned.append((r.id, self._clock))
            if r.id in self.reject:
                out.append(Generation(request_id=r.id, text="", error="rejected by the fake engine"))
            else:
                out.append(Generation(request_id=r.id, text=answer_for(r), finish_reason="stop",
                                      output_tokens=3))
        self._rng.shuffle(out)
        return out

    def close(self) -> None:
        self.closed = True


@dataclass
class FakeSpeech:
    """A speech engine that renders a short tone per summary and counts what it spoke."""

    batch_size: int = 2
    name: str = "fake-speech"
    model: str = "fake-model"
    spoken: list[str] = field(default_factory=list)

    def speak(self, requests):
        import numpy as np

        from omnibatch.engine.base import Speech

        self.spoken.extend(r.id for r in requests)
        return [Speech(request_id=r.id, audio=np.full(2400, 0.1, dtype=np.float32), sample_rate=24000)
                for r in requests]

    def close(self) -> None:
        pass


# -- a task without media: for scheduler tests ---------------------------------------------


def fake_probe(item):
    """MediaInfo from the item's manifest keys: `regions` one-second regions (or `fail` at probe)."""
    from pathlib import Path

    from omnibatch.errors import MediaError
    from omnibatch.records import MediaInfo, StreamInfo

    if item.extra.get("fail") == "probe":
        raise MediaError(f"{item.id}: cannot be probed (fake)")
    regions = int(item.extra.get("regions", 1))
    return MediaInfo(path=Path(item.path), format_name="fake", duration_s=float(regions),
                     streams=(StreamInfo(index=0, kind="audio", codec="pcm"),))


@dataclass
class FakeTask:
    """`regions` first-pass requests of 1 s of audio each, then text rounds of the sizes in
    `rounds` (e.g. [2, 1]), then a row whose text joins every answer in order."""

    rounds: tuple[int, ...] = (2, 1)
    name: str = "transcribe"
    hold_seconds: float = 60.0

    @property
    def row_type(self):
        from omnibatch.output.tables import TranscribeRow

        return TranscribeRow

    def decode(self, item, info):
        import numpy as np

        from omnibatch.errors import MediaError
        from omnibatch.pipeline.tasks import RegionRequest
        from omnibatch.records import Chunk

        fail_at = item.extra.get("fail_decode_at")
        if item.extra.get("crash"):  # the worker process dies as if killed (out of memory, a segfault)
            import os

            os._exit(9)
        for k in range(int(info.duration_s)):
            if item.extra.get("slow_s"):  # decoding that takes its time, like a long file
                import time

                time.sleep(float(item.extra["slow_s"]))
            if fail_at is not None and k == int(fail_at):
                raise MediaError(f"{item.id}: corrupt at {k} s (fake)")
            seed = int(hashlib.sha256(f"{item.id}/{k}".encode()).hexdigest()[:8], 16)
            audio = np.random.default_rng(seed).standard_normal(SAMPLE_RATE).astype(np.float32)
            chunk = Chunk(item.id, k, float(k), float(k + 1))
            yield RegionRequest(chunk, Request(id=chunk.id, prompt="asr", audio=audio))

    def followup(self, item, info, chunks, generations, rounds):
        if len(rounds) >= len(self.rounds):
            return []
        size = self.rounds[len(rounds)]
        source = " ".join(g.text for g in (rounds[-1] if rounds else generations))
        return [Request(id=f"{item.id}#r{len(rounds)}.{k}", prompt=f"summarize part {k}: {source}")
                for k in range(size)]

    def finish(self, base, item, info, chunks, generations, rounds):
        from omnibatch.output.tables import TranscribeRow
        from omnibatch.pipeline.tasks import FileResult

        text = " | ".join(" ".join(g.text for g in gens) for gens in [generations, *rounds])
        return FileResult(row=TranscribeRow.extend(base, text=text, num_chunks=len(chunks)))

    def speech_request(self, row):
        return None

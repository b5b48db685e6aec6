"""The engine contracts: Thinker engines (requests in, generations out as they finish) and speech
engines (summary text in, 24 kHz waveforms out).

The scheduler keeps up to `max_in_flight` requests submitted, calls `step()` to
let the engine work, and takes back whatever finished, by request id, in any
order. An engine never waits for the scheduler: as long as requests are in
flight, `step()` runs the next batch (transformers, whisper) or the next
scheduler step of a running engine (vLLM, which takes new requests between
steps). `generate_all` is the blocking convenience on top, for tests and
one-off calls.

A speech engine (`SpeechEngine`: transformers' Talker + Code2Wav, or vLLM-Omni's
stage pipeline) speaks a batch of `SpeechRequest`s at a time and returns one
`Speech` per request. The registry of both kinds is `omnibatch.engine`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from omnibatch.errors import InputError
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


# -- speech engines (Talker + Code2Wav): summary text -> a 24 kHz waveform ---------------------

SAMPLE_RATE = 24000  # Code2Wav's output rate
CODES_PER_SECOND = 12.5  # Talker frames per second of speech
SAMPLES_PER_CODE = 1920  # SAMPLE_RATE / CODES_PER_SECOND
SPEAKERS = ("Ethan", "Chelsie", "Aiden")  # the voices of Qwen3-Omni-30B-A3B-Instruct; Ethan is its default
# The cap on speech length: slower than anyone reads aloud (100 words a minute) plus a margin.
# A real Talker stops long before it; one that never stops (the random tiny model) is cut here.
SECONDS_PER_WORD = 0.6
MARGIN_S = 5.0

@dataclass(frozen=True)
class SpeechRequest:
    """Speak `text` in the voice `speaker`, for at most `max_seconds`."""

    id: str
    text: str
    speaker: str = "Ethan"
    max_seconds: float = 60.0


@dataclass
class Speech:
    """What a speech engine returned for one request. `error` set means it failed alone."""

    request_id: str
    audio: np.ndarray | None  # float32 mono, nominally in [-1, 1]
    sample_rate: int = SAMPLE_RATE
    error: str | None = None
    capped: bool = False  # the length cap stopped it, not the Talker
    spoken_text: str | None = None  # what the Talker was given to say, where the engine reports it

    @property
    def duration_s(self) -> float:
        return 0.0 if self.audio is None else self.audio.size / self.sample_rate


class SpeechEngine(Protocol):
    name: str
    model: str
    batch_size: int  # requests per call the engine handles well; the stage feeds it that many at a time

    def speak(self, requests: Sequence[SpeechRequest]) -> list[Speech]:
        """One Speech per request, in the order given; a request that fails alone has `error` set."""
        ...

    def close(self) -> None: ...


def speech_seconds_cap(text: str) -> float:
    """The longest speech `text` may take: `SECONDS_PER_WORD` per word plus `MARGIN_S`."""
    from omnibatch.summaries import count_words

    return count_words(text) * SECONDS_PER_WORD + MARGIN_S


def codes_for(seconds: float) -> int:
    """Talker steps (codec frames) for `seconds` of speech."""
    return max(1, math.ceil(seconds * CODES_PER_SECOND))


def check_speaker(name: str) -> str:
    """The speaker's canonical name ("ethan" -> "Ethan"), or an InputError naming the choices."""
    by_key = {s.lower(): s for s in SPEAKERS}
    key = (name or "").strip().lower()
    if key not in by_key:
        raise InputError(f"unknown speaker {name!r}; choose one of: {', '.join(SPEAKERS)}")
    return by_key[key]

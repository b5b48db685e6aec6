"""The speech stage of `summarize`: summary text -> Talker -> Code2Wav -> a 24 kHz waveform.

Two engines turn text into speech, each imported only when built:

| engine | where | how |
| --- | --- | --- |
| `transformers` | anywhere, CPU included | the full Qwen3-Omni; the summary forced as the Thinker's reply |
| `vllm-omni` | GPU nodes | vLLM-Omni's thinker -> talker -> code2wav stage pipeline |

The engine follows the Thinker engine the run uses (`choose_speech_engine`):
`vllm` -> `vllm-omni` where it is installed and a GPU is visible, else
`transformers`. Each engine is built once per shard, after the Thinker is
closed, and only when some summary is to be spoken.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from omnibatch.errors import InputError

SAMPLE_RATE = 24000  # Code2Wav's output rate
CODES_PER_SECOND = 12.5  # Talker frames per second of speech
SAMPLES_PER_CODE = 1920  # SAMPLE_RATE / CODES_PER_SECOND
SPEAKERS = ("Ethan", "Chelsie", "Aiden")  # the voices of Qwen3-Omni-30B-A3B-Instruct; Ethan is its default
# The cap on speech length: slower than anyone reads aloud (100 words a minute) plus a margin.
# A real Talker stops long before it; one that never stops (the random tiny model) is cut here.
SECONDS_PER_WORD = 0.6
MARGIN_S = 5.0

SPEECH_ENGINES: dict[str, tuple[str, str]] = {
    "transformers": ("omnibatch.engine.speech_transformers", "TransformersSpeechEngine"),
    "vllm-omni": ("omnibatch.engine.vllm_omni_engine", "VllmOmniSpeechEngine"),
}


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


def choose_speech_engine(thinker_engine: str) -> str:
    """`vllm-omni` when the run's Thinker engine is vLLM, vllm-omni is installed and a GPU is visible."""
    from omnibatch.engine import cuda_available, resolve_engine_name

    key = (thinker_engine or "auto").strip().lower()
    if key == "auto":
        key = resolve_engine_name(key)
    if key == "vllm" and cuda_available():
        from omnibatch.engine.vllm_omni_engine import vllm_omni_available  # here or in its own .venv-omni

        if vllm_omni_available():
            return "vllm-omni"
    return "transformers"


def build_speech_engine(name: str, model: str | None, **options: Any) -> SpeechEngine:
    if name not in SPEECH_ENGINES:
        raise InputError(f"unknown speech engine {name!r}; choose one of: {', '.join(SPEECH_ENGINES)}")
    module_name, class_name = SPEECH_ENGINES[name]
    engine_class = getattr(importlib.import_module(module_name), class_name)
    return engine_class(model, **options)

"""Speak a batch of summaries with a speech engine and write each result as a WAV."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from omnibatch.engine.base import SpeechEngine, SpeechRequest
from omnibatch.output.names import safe_filename
from omnibatch.output.wav import write_wav

log = logging.getLogger(__name__)

AUDIO_DIR = "audio"


@dataclass(frozen=True)
class SpokenFile:
    """A summary rendered to `out_dir / audio_path`, or why it was not (`error`)."""

    id: str
    audio_path: str | None = None  # relative to the output folder: audio/<safe id>.wav
    duration_s: float | None = None
    sample_rate: int | None = None
    error: str | None = None


@dataclass
class SpeechStats:
    requests: int = 0
    spoken: int = 0
    failed: int = 0
    capped: int = 0
    audio_s: float = 0.0
    engine_s: float = 0.0


def audio_relpath(item_id: str) -> str:
    return f"{AUDIO_DIR}/{safe_filename(item_id)}.wav"


def speak_batch(engine: SpeechEngine, batch: Sequence[SpeechRequest], out_dir: Path,
                stats: SpeechStats | None = None) -> list[SpokenFile]:
    """Speak one batch and write each WAV; one SpokenFile per request, in order."""
    stats = stats if stats is not None else SpeechStats()
    t0 = time.perf_counter()
    speeches = engine.speak(list(batch))
    stats.engine_s += time.perf_counter() - t0
    stats.requests += len(batch)
    if len(speeches) != len(batch):
        raise RuntimeError(f"the {engine.name} speech engine returned {len(speeches)} results "
                           f"for {len(batch)} requests")
    return [_write(request, speech, out_dir, stats) for request, speech in zip(batch, speeches)]


def _write(request: SpeechRequest, speech, out_dir: Path, stats: SpeechStats) -> SpokenFile:
    if speech.error is None and (speech.audio is None or speech.audio.size == 0):
        speech.error = "the speech engine returned no audio"
    if speech.error is not None:
        stats.failed += 1
        return SpokenFile(request.id, error=f"speech failed: {speech.error}")
    relpath = audio_relpath(request.id)
    try:
        duration = write_wav(out_dir / relpath, speech.audio, speech.sample_rate)
    except OSError as exc:
        stats.failed += 1
        return SpokenFile(request.id, error=f"cannot write {out_dir / relpath}: {exc.strerror or exc}")
    if speech.capped:
        stats.capped += 1
        log.warning("%s: speech stopped at the length cap (%.0f s); the Talker had not finished",
                    request.id, request.max_seconds)
    stats.spoken += 1
    stats.audio_s += duration
    return SpokenFile(request.id, audio_path=relpath, duration_s=duration, sample_rate=speech.sample_rate)

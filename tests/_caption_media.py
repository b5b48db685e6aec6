"""Media and helpers for the caption tests: real files made by ffmpeg and espeak-ng, a tiny-model
variant folder, and an engine wrapper that notes what the real engine was asked."""

from __future__ import annotations

import json
import shutil
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000
GNOME_FIGURES = Path("/usr/share/help/C/gnome-help/figures")


def gnome_screencasts() -> list[Path]:
    """Real screencasts (VP8 WebM, silent) from Debian's gnome-user-docs, when installed."""
    return sorted(GNOME_FIGURES.glob("*.webm")) if GNOME_FIGURES.is_dir() else []


def speech(text: str, speed: int = 170) -> np.ndarray:
    """espeak-ng speech as 16 kHz mono float32."""
    wav = subprocess.run(["espeak-ng", "-v", "en-us", "-s", str(speed), "--stdout", text],
                         capture_output=True, check=True).stdout
    raw = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", "pipe:0", "-f", "f32le", "-ac", "1",
                          "-ar", str(SAMPLE_RATE), "pipe:1"],
                         input=wav, capture_output=True, check=True).stdout
    samples = np.frombuffer(raw, dtype=np.float32)
    # espeak pads its output with silence; trim it so the layout says exactly where speech is.
    loud = np.flatnonzero(np.abs(samples) > 1e-3)
    return samples[loud[0]: loud[-1] + 1].copy()


def write_wav(path: Path, samples: np.ndarray) -> Path:
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(pcm.tobytes())
    return path


def lay_out(parts: list[np.ndarray | float]) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Concatenate speech arrays and silences (floats, seconds); return the audio and the speech spans."""
    pieces, spans, at = [], [], 0
    for part in parts:
        if isinstance(part, float):
            piece = np.zeros(round(part * SAMPLE_RATE), np.float32)
        else:
            piece = part
            spans.append((at / SAMPLE_RATE, (at + piece.size) / SAMPLE_RATE))
        pieces.append(piece)
        at += piece.size
    return np.concatenate(pieces), spans


def variant_copy(tiny_dir: Path, folder: Path, variant: str) -> Path:
    """A copy of the tiny model that says it is the `variant` checkpoint (e.g. the Captioner)."""
    from omnibatch.models.tiny import MARKER_FILE

    shutil.copytree(tiny_dir, folder)
    marker = json.loads((folder / MARKER_FILE).read_text())
    (folder / MARKER_FILE).write_text(json.dumps({**marker, "variant": variant}))
    return folder


@dataclass(frozen=True)
class Asked:
    """What one request carried (the arrays themselves are not kept)."""

    id: str
    prompt: str | None
    audio_s: float | None
    video_shape: tuple[int, ...] | None
    video_fps: float | None


class RecordingEngine:
    """The real engine, plus a note of every request it was given."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.name = inner.name
        self.model = inner.model
        self.asked: list[Asked] = []
        self.answers: dict[str, str] = {}  # request id -> generated text

    @property
    def max_in_flight(self) -> int:
        return self.inner.max_in_flight

    @property
    def in_flight(self) -> int:
        return self.inner.in_flight

    def submit(self, requests):
        for r in requests:
            self.asked.append(Asked(
                id=r.id, prompt=r.prompt,
                audio_s=None if r.audio is None else r.audio.size / SAMPLE_RATE,
                video_shape=None if r.video is None else tuple(r.video.shape),
                video_fps=r.video_fps,
            ))
        self.inner.submit(requests)

    def step(self):
        out = self.inner.step()
        self.answers.update((g.request_id, g.text) for g in out)
        return out

    def close(self) -> None:
        self.inner.close()


def recording_factory(holder: list[RecordingEngine]):
    """An engine factory for run_shard that builds the configured engine and records its requests."""

    def factory(config):
        from omnibatch.run.executor import default_engine_factory

        engine = RecordingEngine(default_engine_factory(config))
        holder.append(engine)
        return engine

    return factory

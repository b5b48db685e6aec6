"""Write speech as WAV: mono 16-bit PCM, to a temporary name and then renamed into place."""

from __future__ import annotations

import os
import uuid
import wave
from pathlib import Path

import numpy as np


def to_pcm16(audio: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] as int16; louder samples are clipped, NaN becomes silence."""
    x = np.nan_to_num(np.asarray(audio, dtype=np.float64).reshape(-1), nan=0.0, posinf=1.0, neginf=-1.0)
    return np.round(np.clip(x, -1.0, 1.0) * 32767.0).astype("<i2")


def write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> float:
    """Write `audio` (1-D float) to `path` as mono PCM16 at `sample_rate`; return its duration in seconds.

    The file appears complete or not at all: it is written beside the target and renamed.
    """
    if sample_rate < 1:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    pcm = to_pcm16(audio)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with wave.open(str(tmp), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(int(sample_rate))
            out.writeframes(pcm.tobytes())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return pcm.size / sample_rate

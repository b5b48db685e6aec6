"""Real speech for the long-form tests: espeak-ng voices, resampled to 16 kHz by ffmpeg.

Speech is made in memory as float32 arrays so a test can lay clips and silences
end to end and know exactly where the speech is.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess

import numpy as np

SAMPLE_RATE = 16000

# Plain sentences with no digits or names, so a recognizer's spelling choices do not count as errors.
PASSAGE = (
    "The history of the river valley begins long before the first farms appeared on its banks. "
    "Every spring the water rose over the low fields and left behind a layer of dark soil. "
    "People learned to plant their crops after the flood had passed and the ground was dry again. "
    "Over many years small villages grew into towns, and the towns were joined by roads and bridges. "
    "Traders carried grain, cloth and salt from one market to the next along the river. "
    "When the railway arrived, the old boats slowly disappeared from the water. "
    "Today the valley is quiet, and visitors walk along the paths where the traders once worked."
)


def have_espeak() -> bool:
    return shutil.which("espeak-ng") is not None and shutil.which("ffmpeg") is not None


@functools.lru_cache(maxsize=64)
def _speak(text: str, voice: str, speed: int) -> bytes:
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "--stdout", text], capture_output=True, check=True
    ).stdout
    return subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-i",
            "-",
            "-ar",
            str(SAMPLE_RATE),
            "-ac",
            "1",
            "-f",
            "f32le",
            "-",
        ],
        input=wav,
        capture_output=True,
        check=True,
    ).stdout


def speak(text: str, voice: str = "en-us", speed: int = 160) -> np.ndarray:
    """`text` read by espeak-ng, as 16 kHz mono float32."""
    return np.frombuffer(_speak(text, voice, speed), dtype=np.float32).copy()


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * SAMPLE_RATE), dtype=np.float32)


def audible_extent(x: np.ndarray, floor: float = 1e-3) -> tuple[float, float]:
    """First and last sample louder than `floor`, in seconds: where a clip's speech is."""
    loud = np.flatnonzero(np.abs(x) > floor)
    return loud[0] / SAMPLE_RATE, (loud[-1] + 1) / SAMPLE_RATE


def lay_out(*parts: np.ndarray | float) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Concatenate clips and silences (a float is seconds of silence).

    Returns the audio and, for each clip, where its audible speech lies in it.
    """
    pieces, truth, t = [], [], 0.0
    for part in parts:
        clip = silence(part) if isinstance(part, (int, float)) else part
        if not isinstance(part, (int, float)):
            a, b = audible_extent(clip)
            truth.append((t + a, t + b))
        pieces.append(clip)
        t += len(clip) / SAMPLE_RATE
    return np.concatenate(pieces), truth


def blocks_of(x: np.ndarray, block: int) -> list[np.ndarray]:
    return [x[i : i + block] for i in range(0, len(x), block)]


def normalize_words(text: str) -> str:
    """Lowercase words without punctuation, for WER."""
    return " ".join(re.sub(r"[^a-z' ]+", " ", text.lower().replace("-", " ")).split())

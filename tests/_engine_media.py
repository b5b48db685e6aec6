"""Real media for the Qwen3-Omni engine tests: espeak-ng speech and ffmpeg test video, decoded by ffmpeg."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000


def speak(text: str, folder: Path, name: str) -> np.ndarray:
    """Synthesize `text` with espeak-ng and decode it to 16 kHz mono float32."""
    wav = folder / f"{name}.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), text], check=True, capture_output=True)
    return decode_audio(wav)


def decode_audio(path: Path) -> np.ndarray:
    raw = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path),
         "-f", "f32le", "-ac", "1", "-ar", str(SAMPLE_RATE), "-"],
        check=True,
        capture_output=True,
    ).stdout
    return np.frombuffer(raw, dtype=np.float32).copy()


def make_video_frames(frames: int, fps: float, width: int, height: int) -> np.ndarray:
    """`frames` frames of ffmpeg's testsrc2 pattern as uint8 (T, H, W, 3)."""
    raw = subprocess.run(
        [
            "ffmpeg", "-nostdin", "-v", "error",
            "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={fps}",
            "-frames:v", str(frames), "-f", "rawvideo", "-pix_fmt", "rgb24", "-",
        ],
        check=True,
        capture_output=True,
    ).stdout
    return np.frombuffer(raw, dtype=np.uint8).reshape(frames, height, width, 3).copy()

"""Real media and readers for the summarize tests: long espeak-ng speech, ffmpeg video, WAVs read back."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests._longform_media import PASSAGE
from tests.mediagen import make_speech, make_video


def long_speech(path: Path, repeats: int, voice: str = "en-us") -> Path:
    """The long-form passage read `repeats` times by espeak-ng (~35 s each), encoded by `path`'s suffix."""
    wav = make_speech(path.with_suffix(".src.wav"), " ".join([PASSAGE] * repeats), voice=voice)
    if path.suffix == ".wav":
        wav.replace(path)
        return path
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(wav), str(path)], check=True)
    wav.unlink()
    return path


def music_video(path: Path, seconds: float) -> Path:
    """A testsrc2 video whose sound is a steady tone: no speech in it."""
    return make_video(path, seconds, size=(160, 96), fps=5.0, audio=True)


def ffprobe_audio(path: Path) -> dict:
    """ffprobe's view of the first audio stream: codec, rate, channels, duration in seconds."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "a:0", "-count_packets",
         "-show_entries", "stream=codec_name,sample_rate,channels,duration,bits_per_sample",
         "-of", "json", str(path)],
        check=True, capture_output=True, text=True,
    ).stdout
    stream = json.loads(out)["streams"][0]
    return {
        "codec": stream["codec_name"],
        "sample_rate": int(stream["sample_rate"]),
        "channels": int(stream["channels"]),
        "bits": int(stream["bits_per_sample"]),
        "duration_s": float(stream["duration"]),
    }

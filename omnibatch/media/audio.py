"""Decode audio to mono float32 with ffmpeg: a whole file or a region, or block by block.

Samples go from ffmpeg's stdout (raw f32le) straight into a numpy buffer, so memory
holds the samples once: no bytes object of the whole output, no second array copy.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from omnibatch.errors import MediaError
from omnibatch.media.ffmpeg import (
    DEFAULT_DECODE_TIMEOUT_S,
    DEFAULT_PROBE_TIMEOUT_S,
    FFmpegPipe,
    check_input,
    ffmpeg_args,
    open_pipe,
)

SAMPLE_RATE = 16000  # what the Qwen3-Omni audio encoder and Whisper take
_BYTES = 4  # float32
_INITIAL_SECONDS = 60.0  # buffer size when the length is unknown; grows by half each time


def decode_audio(
    path: str | os.PathLike[str],
    *,
    sample_rate: int = SAMPLE_RATE,
    start_s: float | None = None,
    duration_s: float | None = None,
    timeout_s: float | None = DEFAULT_DECODE_TIMEOUT_S,
) -> np.ndarray:
    """Decode the first audio stream of `path`, downmixed to mono, as float32 at `sample_rate`.

    `start_s`/`duration_s` select the region [start_s, start_s + duration_s); the result
    holds about `duration_s * sample_rate` samples (fewer when the file ends first).
    Raises MediaError when the file cannot be read, has no audio stream, yields no
    samples, is truncated, or takes longer than `timeout_s` (the process is then killed).
    """
    p = check_input(path)
    _check_region(p.name, start_s, duration_s)
    output = _pcm_output(sample_rate)
    args = ffmpeg_args(p, stream="a:0", output=output, start_s=start_s, duration_s=duration_s)
    if duration_s is not None:
        capacity = math.ceil(duration_s * sample_rate) + 16  # resampler may round up a sample or two
    else:
        capacity = int(_INITIAL_SECONDS * sample_rate)
    with open_pipe(args, p, timeout_s=timeout_s, what="audio decode") as pipe:
        samples = _read_all(pipe, capacity)
    if samples.size == 0:
        whole = start_s is None and duration_s is None
        where = "" if whole else f" in the region starting at {start_s or 0:g} s"
        raise MediaError(f"{p.name}: no audio could be decoded{where}")
    return samples


def stream_audio(
    path: str | os.PathLike[str],
    *,
    block_s: float = 30.0,
    sample_rate: int = SAMPLE_RATE,
    start_s: float | None = None,
    timeout_s: float | None = DEFAULT_PROBE_TIMEOUT_S,
) -> Iterator[np.ndarray]:
    """Yield consecutive mono float32 blocks of `round(block_s * sample_rate)` samples.

    The last block is shorter when the audio ends. One ffmpeg process runs for the whole
    stream and memory stays at about one block, however long the file. `timeout_s`
    limits the wait for each block (the consumer's own time does not count). Closing the
    iterator early stops ffmpeg. Errors (no audio stream, truncation) raise MediaError,
    possibly after some blocks were yielded.
    """
    p = check_input(path)
    _check_region(p.name, start_s, None)
    block = max(1, round(block_s * sample_rate))
    args = ffmpeg_args(p, stream="a:0", output=_pcm_output(sample_rate), start_s=start_s)
    return _stream_blocks(args, p, block, timeout_s)


def _stream_blocks(args: list[str], path: Path, block: int, timeout_s: float | None) -> Iterator[np.ndarray]:
    pipe = FFmpegPipe(args, path, timeout_s)  # starts at the first next(), not at the call
    done = False
    total = 0
    try:
        while True:
            out = np.empty(block, dtype=np.float32)
            pipe.restart_deadline()
            with memoryview(out) as mv, mv.cast("B") as raw:
                got = pipe.read_into(raw) // _BYTES
            pipe.cancel_deadline()
            if got == 0:
                break
            total += got
            if got < block:
                yield out[:got].copy()  # a small copy, so the tail does not pin a full block
                break
            yield out
        done = True
    finally:
        if not done:
            pipe.close()
    pipe.finish(what="audio decode")
    if total == 0:
        raise MediaError(f"{path.name}: no audio could be decoded")


def _read_all(pipe: FFmpegPipe, capacity: int) -> np.ndarray:
    """Read f32le samples into one array, growing it in place (realloc) when it fills up."""
    buf = np.empty(max(capacity, 1), dtype=np.float32)
    filled = 0  # bytes
    while True:
        if filled == buf.nbytes:
            # No views of buf exist here, so an in-place resize is safe; for large arrays
            # realloc remaps pages instead of copying them.
            buf.resize(int(buf.size * 1.5) + 1024, refcheck=False)
        with memoryview(buf) as mv, mv.cast("B") as raw:
            got = pipe.read_into(raw[filled:])
        filled += got
        if filled < buf.nbytes:  # read_into only stops short at the end of the stream
            break
    buf.resize(filled // _BYTES, refcheck=False)
    return buf


def _pcm_output(sample_rate: int) -> dict[str, str | int | float]:
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    return {"f": "f32le", "acodec": "pcm_f32le", "ac": 1, "ar": int(sample_rate)}


def _check_region(name: str, start_s: float | None, duration_s: float | None) -> None:
    if start_s is not None and (not math.isfinite(start_s) or start_s < 0):
        raise ValueError(f"{name}: start_s must be >= 0, got {start_s}")
    if duration_s is not None and (not math.isfinite(duration_s) or duration_s <= 0):
        raise ValueError(f"{name}: duration_s must be > 0, got {duration_s}")

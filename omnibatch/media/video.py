"""Sample a bounded number of RGB frames from a video, resized for the vision encoder.

decord is tried first (it seeks straight to each sampled frame); ffmpeg is the
fallback. Both turn rotated (phone) videos upright.
decord has no format whitelist of its own, so it only ever sees a file that
`probe()` (with ffmpeg's whitelist) has accepted.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import numpy as np

from omnibatch.errors import MediaError, MissingDependencyError
from omnibatch.media.ffmpeg import DEFAULT_DECODE_TIMEOUT_S, DEFAULT_PROBE_TIMEOUT_S, ffmpeg_args, open_pipe
from omnibatch.media.probe import StreamExtra, probe_detailed
from omnibatch.records import MediaInfo, StreamInfo

log = logging.getLogger(__name__)

# Qwen3-Omni's vision encoder takes 16-pixel patches and merges 2x2 of them: sides
# must be multiples of 32. 256 * 32 * 32 pixels is 256 merged tokens per frame pair.
PATCH_FACTOR = 32
DEFAULT_MAX_PIXELS = 256 * PATCH_FACTOR * PATCH_FACTOR
# With frames further apart than this, one seek per frame beats decoding the whole span.
_SEEK_GAP_S = 4.0

Backend = Literal["auto", "decord", "ffmpeg"]


@dataclass(frozen=True)
class Frames:
    """Frames sampled evenly from [start, end) of a video."""

    frames: np.ndarray  # uint8 (T, H, W, 3), RGB
    fps: float  # the sampling rate actually used (frames per second of the timeline)
    timestamps_s: tuple[float, ...]  # time of each frame in the file's timeline

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of every frame."""
        return int(self.frames.shape[2]), int(self.frames.shape[1])


def sample_frames(
    path: str | os.PathLike[str],
    *,
    fps: float = 2.0,
    max_frames: int = 64,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    start_s: float | None = None,
    end_s: float | None = None,
    timeout_s: float | None = DEFAULT_DECODE_TIMEOUT_S,
    backend: Backend = "auto",
    probed: tuple[MediaInfo, dict[int, StreamExtra]] | None = None,
) -> Frames:
    """Sample up to `max_frames` frames at `fps` (lowered when the span is long) from [start_s, end_s).

    Frames are resized so width * height <= max_pixels, keeping the displayed aspect ratio
    (rotation applied), with both sides multiples of 32. Memory holds only the sampled
    frames. Raises MediaError for unreadable files and files without a video stream.
    `probed`: what `probe_detailed(path)` said, for callers sampling many spans of one file
    (the file is then not probed again for each).
    """
    if fps <= 0 or max_frames < 1:
        raise ValueError(f"fps must be > 0 and max_frames >= 1, got fps={fps}, max_frames={max_frames}")
    info, extras = probed or probe_detailed(path, timeout_s=min(DEFAULT_PROBE_TIMEOUT_S, timeout_s or math.inf))
    name = info.path.name
    if not info.video_streams:
        raise MediaError(f"{name}: no video stream (an audio file, or only cover art)")
    stream = info.video_streams[0]
    extra = extras.get(stream.index) or StreamExtra()
    # The picture may stop before the sound does: sample within the video stream's own length.
    start, end = _span(name, extra.duration_s or info.duration_s, start_s, end_s)
    rate = sampling_rate(end - start, fps=fps, max_frames=max_frames, source_fps=stream.fps)
    times = sample_times(start, end, rate, max_frames)
    width, height = fit_size(stream.width or PATCH_FACTOR, stream.height or PATCH_FACTOR, max_pixels)

    if backend in ("auto", "decord"):
        try:
            frames, kept = _decord_frames(info.path, times, width, height)
            return Frames(frames=frames, fps=rate, timestamps_s=tuple(kept))
        except ImportError:
            if backend == "decord":
                raise MissingDependencyError(
                    "decord is not installed: `pip install decord`, or sample with backend='ffmpeg'"
                ) from None
            log.debug("decord is not installed; sampling %s with ffmpeg", name)
        except Exception as exc:
            if backend == "decord":
                raise MediaError(f"{name}: decord could not read the video ({exc})") from exc
            log.debug("decord failed on %s (%s); sampling with ffmpeg", name, exc)
    return _ffmpeg_frames(info.path, stream, times, rate, width, height, timeout_s)


def sampling_rate(span_s: float, *, fps: float, max_frames: int, source_fps: float | None) -> float:
    """The frame rate to sample a span at: `fps`, lowered to fit `max_frames`, never above the source."""
    rate = min(fps, max_frames / span_s) if span_s > 0 else fps
    if source_fps:
        rate = min(rate, source_fps)
    return rate


def sample_times(start_s: float, end_s: float, rate: float, max_frames: int) -> list[float]:
    """Times start, start + 1/rate, ... before end: at least one, at most max_frames."""
    count = math.ceil((end_s - start_s) * rate - 1e-9)
    count = min(max_frames, max(1, count))
    return [start_s + i / rate for i in range(count)]


def fit_size(width: int, height: int, max_pixels: int, factor: int = PATCH_FACTOR) -> tuple[int, int]:
    """(w, h), multiples of `factor`, close to width x height in aspect, with w * h <= max_pixels."""
    if max_pixels < factor * factor:
        raise ValueError(f"max_pixels must be at least {factor * factor}, got {max_pixels}")
    w = max(factor, round(width / factor) * factor)
    h = max(factor, round(height / factor) * factor)
    if w * h > max_pixels:
        beta = math.sqrt(width * height / max_pixels)
        w = max(factor, math.floor(width / beta / factor) * factor)
        h = max(factor, math.floor(height / beta / factor) * factor)
    # A very thin frame can still be over after one side was raised to `factor`.
    if w * h > max_pixels:
        if w >= h:
            w = max(factor, max_pixels // h // factor * factor)
        else:
            h = max(factor, max_pixels // w // factor * factor)
    return w, h


def _span(name: str, duration: float, start_s: float | None, end_s: float | None) -> tuple[float, float]:
    start = 0.0 if start_s is None else float(start_s)
    end = duration if end_s is None else min(float(end_s), duration)
    if start < 0 or (end_s is not None and end_s <= start):
        raise ValueError(f"{name}: need 0 <= start_s < end_s, got start_s={start_s}, end_s={end_s}")
    if start >= end:
        raise MediaError(
            f"{name}: the region starting at {start:g} s is past the end of the video ({duration:g} s)"
        )
    return start, end


def _decord_frames(path: Path, times: list[float], width: int, height: int) -> tuple[np.ndarray, list[float]]:
    """Frames at `times` via decord. Like ffmpeg, decord applies the display rotation, and
    `width`/`height` are the displayed (rotated) size."""
    import decord

    reader = decord.VideoReader(str(path), ctx=decord.cpu(0), width=width, height=height, num_threads=1)
    count = len(reader)
    if count == 0:
        raise RuntimeError("no frames")
    avg_fps = reader.get_avg_fps() or 1.0
    # The nearest frame to each time; a time past the last frame is dropped, as ffmpeg drops it.
    picks = [(t, max(0, round(t * avg_fps))) for t in times]
    kept = [t for t, i in picks if i < count]
    if not kept:
        raise RuntimeError("no frame at the sampled times")
    frames = reader.get_batch([i for _, i in picks if i < count]).asnumpy()
    del reader
    if frames.dtype != np.uint8 or frames.shape[1:] != (height, width, 3):
        raise RuntimeError(f"unexpected frame batch {frames.dtype} {frames.shape}")
    return frames, kept


def _ffmpeg_frames(
    path: Path, stream: StreamInfo, times: list[float], rate: float, width: int, height: int,
    timeout_s: float | None,
) -> Frames:  # fmt: skip
    if len(times) > 1 and 1.0 / rate > _SEEK_GAP_S:
        frames, kept = _ffmpeg_seek_each(path, stream, times, width, height, timeout_s)
    else:
        frames, kept = _ffmpeg_decode_span(path, stream, times, rate, width, height, timeout_s)
    if not kept:
        raise MediaError(f"{path.name}: no video frame could be decoded")
    return Frames(frames=frames, fps=rate, timestamps_s=tuple(kept))


def _raw_output(width: int, height: int, filters: str, frames: int) -> dict[str, str | int | float]:
    return {"f": "rawvideo", "pix_fmt": "rgb24", "vf": filters, "frames:v": frames}


def _scale(width: int, height: int) -> str:
    return f"scale={width}:{height}:flags=bicubic"


def _ffmpeg_decode_span(
    path: Path, stream: StreamInfo, times: list[float], rate: float, width: int, height: int,
    timeout_s: float | None,
) -> tuple[np.ndarray, list[float]]:  # fmt: skip
    """One ffmpeg over the whole span; the fps filter keeps one frame per 1/rate."""
    rate_text = str(Fraction(rate).limit_denominator(1_000_000))
    # fps with round=up keeps, for each time k/rate, the last frame starting at or before it;
    # moving every frame half a source frame earlier makes that the frame nearest to k/rate, as
    # decord's pick. (The default, round=near, keeps a frame up to half a period late.)
    half = 0.5 / stream.fps if stream.fps else 0.0
    filters = f"setpts=PTS-{half:.6f}/TB,fps={rate_text}:round=up,{_scale(width, height)}"
    span = times[-1] - times[0] + 1.0 / rate
    args = ffmpeg_args(
        path, stream=str(stream.index), output=_raw_output(width, height, filters, len(times)),
        start_s=times[0], duration_s=span,
    )  # fmt: skip
    out = np.empty((len(times), height, width, 3), dtype=np.uint8)
    with open_pipe(args, path, timeout_s=timeout_s, what="frame sampling") as pipe:
        with memoryview(out) as mv, mv.cast("B") as raw:
            got = pipe.read_into(raw) // (width * height * 3)
    if got < len(times):
        out = out[:got].copy()
    return out, times[:got]


def _ffmpeg_seek_each(
    path: Path, stream: StreamInfo, times: list[float], width: int, height: int, timeout_s: float | None
) -> tuple[np.ndarray, list[float]]:
    """One short ffmpeg per frame: for long spans, where decoding everything would be slow."""
    out = np.empty((len(times), height, width, 3), dtype=np.uint8)
    kept: list[float] = []
    half = 0.5 / stream.fps if stream.fps else 0.0  # seek lands on the first frame at or after: aim early
    for t in times:
        args = ffmpeg_args(
            path, stream=str(stream.index), output=_raw_output(width, height, _scale(width, height), 1),
            start_s=max(0.0, t - half),
        )  # fmt: skip
        with open_pipe(args, path, timeout_s=timeout_s, what="frame sampling") as pipe:
            with memoryview(out[len(kept)]) as mv, mv.cast("B") as raw:
                got = pipe.read_into(raw)
        if got == width * height * 3:
            kept.append(t)
    if len(kept) < len(times):
        out = out[: len(kept)].copy()
    return out, kept

"""What a media file holds, from ffprobe's JSON: `probe(path) -> MediaInfo`."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from omnibatch.errors import MediaError
from omnibatch.media.ffmpeg import DEFAULT_PROBE_TIMEOUT_S, check_input, describe_failure, run_ffprobe
from omnibatch.records import MediaInfo, StreamInfo

_KINDS = {"audio", "video", "subtitle", "data", "attachment"}
_TRUNCATED_WARNING = "filesize and duration do not match"


@dataclass(frozen=True)
class StreamExtra:
    """Facts about a stream that MediaInfo does not carry, for the frame sampler."""

    rotation: int = 0  # display rotation in degrees, ffprobe's sign (counter-clockwise), 0..359
    duration_s: float | None = None  # this stream's own duration, when the container says


def probe(path: str | os.PathLike[str], *, timeout_s: float = DEFAULT_PROBE_TIMEOUT_S) -> MediaInfo:
    """Probe one local media file. Raises MediaError with a short reason when it is unusable.

    Width and height are the displayed size: a phone video stored landscape with a
    90-degree rotation reports portrait dimensions.
    """
    info, _ = probe_detailed(path, timeout_s=timeout_s)
    return info


def probe_detailed(
    path: str | os.PathLike[str], *, timeout_s: float = DEFAULT_PROBE_TIMEOUT_S
) -> tuple[MediaInfo, dict[int, StreamExtra]]:
    """`probe`, plus a StreamExtra for each stream, by stream index."""
    p = check_input(path)
    out, stderr = run_ffprobe(p, timeout_s=timeout_s)
    if _TRUNCATED_WARNING in stderr:
        raise MediaError(f"{p.name}: {describe_failure(stderr)}")
    try:
        data = json.loads(out)
    except json.JSONDecodeError:
        raise MediaError(f"{p.name}: ffprobe returned unreadable output; the file may be damaged") from None
    return parse_probe(p, data)


def parse_probe(path: Path, data: dict[str, Any]) -> tuple[MediaInfo, dict[int, StreamExtra]]:
    """Build MediaInfo from ffprobe's `-show_format -show_streams` JSON (a pure function)."""
    fmt = data.get("format") or {}
    raw_streams = data.get("streams") or []
    streams: list[StreamInfo] = []
    extras: dict[int, StreamExtra] = {}
    for s in raw_streams:
        info, rotation = _stream(s)
        streams.append(info)
        extras[info.index] = StreamExtra(rotation=rotation, duration_s=_positive(s.get("duration")))
    if not any(s.kind == "audio" or (s.kind == "video" and not s.attached_pic) for s in streams):
        raise MediaError(f"{path.name}: has no audio or video stream")
    duration = _duration(fmt, raw_streams)
    if duration is None:
        raise MediaError(f"{path.name}: has no duration (empty, damaged or not a timed media file)")
    return (
        MediaInfo(path=path, format_name=str(fmt.get("format_name", "")), duration_s=duration,
                  streams=tuple(streams)),
        extras,
    )  # fmt: skip


def _stream(s: dict[str, Any]) -> tuple[StreamInfo, int]:
    kind = s.get("codec_type")
    kind = kind if kind in _KINDS else "unknown"
    attached = bool((s.get("disposition") or {}).get("attached_pic"))
    width, height = _int(s.get("width")), _int(s.get("height"))
    rotation = _rotation(s) if kind == "video" else 0
    if width and height and rotation % 180 == 90:
        width, height = height, width
    fps = None
    if kind == "video" and not attached:
        fps = _rate(s.get("avg_frame_rate")) or _rate(s.get("r_frame_rate"))
    info = StreamInfo(
        index=int(s.get("index", 0)),
        kind=kind,
        codec=str(s.get("codec_name", "unknown")),
        sample_rate=_int(s.get("sample_rate")) if kind == "audio" else None,
        channels=_int(s.get("channels")) if kind == "audio" else None,
        width=width,
        height=height,
        fps=fps,
        attached_pic=attached,
    )
    return info, rotation


def _rotation(s: dict[str, Any]) -> int:
    """Display rotation in degrees, 0..359 (side data in ffmpeg >= 5, the `rotate` tag before)."""
    for side in s.get("side_data_list") or []:
        if "rotation" in side:
            return _degrees(side["rotation"])
    tag = (s.get("tags") or {}).get("rotate")
    return _degrees(tag) if tag is not None else 0


def _degrees(value: Any) -> int:
    try:
        return int(round(float(value))) % 360
    except (TypeError, ValueError):
        return 0


def _duration(fmt: dict[str, Any], streams: list[dict[str, Any]]) -> float | None:
    d = _positive(fmt.get("duration"))
    if d:
        return d
    timed = [s for s in streams if not (s.get("disposition") or {}).get("attached_pic")]
    known = [x for x in (_positive(s.get("duration")) for s in timed) if x]
    return max(known) if known else None


def _positive(value: Any) -> float | None:
    x = _float(value)
    return x if x is not None and x > 0 else None


def _rate(value: Any) -> float | None:
    if not value or not isinstance(value, str):
        return None
    try:
        r = Fraction(value)
    except (ValueError, ZeroDivisionError):
        return None
    return float(r) if r > 0 else None


def _float(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None

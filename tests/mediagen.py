"""Make real media files for tests with ffmpeg (lavfi sources) and espeak-ng.

Every function writes one file and returns its path. The codec and container
follow the file suffix unless given:

    make_audio(tmp / "a.mp3", 5.0)                       # 5 s of a 440 Hz sine, MP3
    make_audio(tmp / "a.ogg", 5.0, codec="libopus")      # Opus in Ogg
    make_audio(tmp / "c.flac", 30.0, signal="chirp")     # a sweep: no two windows look alike
    make_video(tmp / "v.webm", 3.0, size=(320, 240))     # VP9 + Opus
    make_video(tmp / "p.mp4", 2.0, size=(320, 192), rotate=90)  # a "phone video": displays 192x320
    make_speech(tmp / "s.wav", "go forward ten meters")  # espeak-ng, 22.05 kHz mono
"""

from __future__ import annotations

import math
import shutil
import struct
import subprocess
from pathlib import Path

# suffix -> (audio codec, container) for audio files
_AUDIO = {
    ".wav": ("pcm_s16le", "wav"),
    ".flac": ("flac", "flac"),
    ".mp3": ("libmp3lame", "mp3"),
    ".m4a": ("aac", "ipod"),
    ".aac": ("aac", "adts"),
    ".ogg": ("libvorbis", "ogg"),
    ".opus": ("libopus", "ogg"),
    ".mka": ("flac", "matroska"),
}
# suffix -> (video codec, audio codec, container) for video files
_VIDEO = {
    ".mp4": ("libx264", "aac", "mp4"),
    ".mov": ("libx264", "aac", "mov"),
    ".mkv": ("libx264", "flac", "matroska"),
    ".webm": ("libvpx-vp9", "libopus", "webm"),
    ".avi": ("mpeg4", "libmp3lame", "avi"),
    ".ts": ("libx264", "aac", "mpegts"),
}
_OPUS_RATES = (8000, 12000, 16000, 24000, 48000)


def has_tool(name: str) -> bool:
    return shutil.which(name) is not None


def _ffmpeg(*args: str) -> None:
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed: {' '.join(cmd)}\n{proc.stderr}")


def audio_source(
    seconds: float, *, signal: str = "sine", sample_rate: int = 44100, frequency: float = 440.0
) -> str:
    """A lavfi source expression: "sine", "chirp" (100 Hz -> ~4 kHz, never repeats) or "noise"."""
    if signal == "sine":
        return f"sine=frequency={frequency}:sample_rate={sample_rate}:duration={seconds}"
    if signal == "chirp":
        # Instantaneous frequency 100 + 130*t Hz over 30 s; phase is its integral. Amplitude 0.5.
        return f"aevalsrc=0.5*sin(2*PI*(100*t+65*t*t)):s={sample_rate}:d={seconds}"
    if signal == "noise":
        return f"anoisesrc=color=pink:seed=7:amplitude=0.3:sample_rate={sample_rate}:duration={seconds}"
    raise ValueError(f"unknown signal {signal!r}")


def make_audio(
    path: str | Path,
    seconds: float,
    *,
    codec: str | None = None,
    container: str | None = None,
    sample_rate: int = 44100,
    channels: int = 1,
    signal: str = "sine",
    frequency: float = 440.0,
) -> Path:
    """Write `seconds` of audio to `path`; codec and container follow the suffix unless given."""
    path = Path(path)
    default_codec, default_container = _AUDIO.get(path.suffix.lower(), ("pcm_s16le", "wav"))
    codec = codec or default_codec
    container = container or default_container
    rate = sample_rate
    if codec == "libopus" and rate not in _OPUS_RATES:
        rate = 48000
    src = audio_source(seconds, signal=signal, sample_rate=rate, frequency=frequency)
    _ffmpeg("-f", "lavfi", "-i", src, "-ac", str(channels), "-c:a", codec, "-f", container, _out(path))
    return path


def make_video(
    path: str | Path,
    seconds: float,
    *,
    size: tuple[int, int] = (320, 240),
    fps: float = 25.0,
    audio: bool = True,
    vcodec: str | None = None,
    acodec: str | None = None,
    container: str | None = None,
    rotate: int = 0,
    signal: str = "sine",
) -> Path:
    """Write a testsrc2 video (moving pattern with a clock) of `seconds`, `size` = (width, height).

    `rotate` (MP4/MOV only) stores a display rotation in degrees, the way phones do:
    the pixels stay `size`, players show them turned.
    """
    path = Path(path)
    dv, da, dc = _VIDEO.get(path.suffix.lower(), ("libx264", "aac", "mp4"))
    vcodec, acodec, container = vcodec or dv, acodec or da, container or dc
    w, h = size
    args = ["-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate={fps}:duration={seconds}"]
    if audio:
        rate = 48000 if acodec == "libopus" else 44100
        args += ["-f", "lavfi", "-i", audio_source(seconds, signal=signal, sample_rate=rate)]
    args += ["-c:v", vcodec, "-pix_fmt", "yuv420p"]
    if vcodec == "libx264":
        args += ["-preset", "ultrafast"]
    if vcodec.startswith("libvpx"):
        args += ["-deadline", "realtime", "-cpu-used", "8", "-b:v", "500k"]
    if audio:
        args += ["-c:a", acodec, "-ac", "1", "-shortest"]
    args += ["-f", container, _out(path)]
    _ffmpeg(*args)
    if rotate:
        set_mp4_rotation(path, rotate)
    return path


def make_speech(path: str | Path, text: str, *, voice: str = "en-us", words_per_minute: int = 160) -> Path:
    """Speak `text` with espeak-ng into a WAV file (22.05 kHz mono)."""
    path = Path(path)
    cmd = ["espeak-ng", "-v", voice, "-s", str(words_per_minute), "-w", str(path), text]
    subprocess.run(cmd, check=True, capture_output=True)
    return path


def make_image(path: str | Path, size: tuple[int, int] = (64, 64)) -> Path:
    """Write one PNG picture to `path`, whatever its suffix (e.g. a picture posing as a video)."""
    path = Path(path)
    _ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={size[0]}x{size[1]}", "-frames:v", "1", "-c:v", "png",
            "-f", "image2", "-update", "1", _out(path))  # fmt: skip
    return path


def add_cover_art(audio: str | Path, image: str | Path, out: str | Path) -> Path:
    """Copy `audio` to `out` with `image` attached as cover art (an attached_pic video stream)."""
    out = Path(out)
    _ffmpeg("-i", f"file:{Path(audio).resolve()}", "-i", f"file:{Path(image).resolve()}",
            "-map", "0", "-map", "1", "-c", "copy", "-disposition:v", "attached_pic", _out(out))  # fmt: skip
    return out


def faststart_copy(src: str | Path, dst: str | Path) -> Path:
    """Copy an MP4 with its index moved to the front, as streaming sites serve them."""
    dst = Path(dst)
    _ffmpeg("-i", f"file:{Path(src).resolve()}", "-c", "copy", "-movflags", "+faststart", _out(dst))
    return dst


def write_bytes(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    path.write_bytes(data)
    return path


def truncate_copy(src: str | Path, dst: str | Path, fraction: float = 0.5) -> Path:
    """Copy the first `fraction` of `src` to `dst`, like an interrupted download."""
    data = Path(src).read_bytes()
    return write_bytes(dst, data[: int(len(data) * fraction)])


def set_mp4_rotation(path: str | Path, degrees: int) -> None:
    """Write a display matrix rotating the video track by `degrees` into an MP4/MOV file, in place.

    ffmpeg 5.1 cannot write one (its `-display_rotation` came in 6.0), so the matrix in the
    video track's `tkhd` box is patched directly.
    """
    path = Path(path)
    data = bytearray(path.read_bytes())
    radians = -degrees * math.pi / 180.0
    c, s = math.cos(radians), math.sin(radians)

    def fixed16(x: float) -> int:
        return int(round(x * 65536)) & 0xFFFFFFFF

    matrix = [fixed16(c), fixed16(-s), 0, fixed16(s), fixed16(c), 0, 0, 0, 1 << 30]
    patched = 0
    for tkhd, handler in _tracks(data):
        if handler != b"vide":
            continue
        version = data[tkhd + 8]
        offset = tkhd + 8 + 4 + (32 if version == 1 else 20) + 16
        data[offset : offset + 36] = struct.pack(">9I", *matrix)
        patched += 1
    if not patched:
        raise ValueError(f"{path}: no video track found to rotate")
    path.write_bytes(bytes(data))


def _boxes(data: bytearray, start: int, end: int):
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        header = 8
        if size == 1:
            size = struct.unpack(">Q", data[pos + 8 : pos + 16])[0]
            header = 16
        elif size == 0:
            size = end - pos
        yield pos, header, size, kind
        pos += size


def _tracks(data: bytearray):
    """(offset of tkhd, handler type) for each trak in moov."""
    for pos, header, size, kind in _boxes(data, 0, len(data)):
        if kind != b"moov":
            continue
        for tpos, theader, tsize, tkind in _boxes(data, pos + header, pos + size):
            if tkind != b"trak":
                continue
            tkhd, handler = None, None
            for cpos, cheader, csize, ckind in _boxes(data, tpos + theader, tpos + tsize):
                if ckind == b"tkhd":
                    tkhd = cpos
                elif ckind == b"mdia":
                    for mpos, mheader, _msize, mkind in _boxes(data, cpos + cheader, cpos + csize):
                        if mkind == b"hdlr":
                            handler = bytes(data[mpos + mheader + 8 : mpos + mheader + 12])
            if tkhd is not None:
                yield tkhd, handler


def _out(path: Path) -> str:
    # An output name starting with '-' or holding ':' must not read as an option or protocol.
    return f"file:{path.resolve()}"

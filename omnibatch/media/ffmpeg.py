"""The one place that runs ffmpeg and ffprobe.

Media files are untrusted. ffmpeg will happily follow a playlist (HLS), a concat
list, an image pattern or an SDP file to other files, URLs and devices, so every
call here is locked to the one regular file it was given, in three layers:

1. `check_input` refuses missing paths, directories, devices, fifos and empty files
   before any process starts;
2. the input is named `file:<absolute path>` (a name starting with '-' or holding a
   ':' is never read as an option or a protocol) and only the `file` protocol is
   allowed, so nothing can reach the network or a pipe;
3. `-format_whitelist` names the demuxers of plain audio/video files. Playlists and
   lists (hls, dash, concat, image2, sdp, rtp, data, lavfi, ...) are refused even
   when their text sits in a file named `.mp3` or `.wav`.

Processes are run here, not by ffmpeg-python (which only builds argument lists), so
that output streams through a pipe and every call has a deadline after which the
process is killed.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from omnibatch.errors import MediaError

FFMPEG = os.environ.get("OMNIBATCH_FFMPEG", "ffmpeg")
FFPROBE = os.environ.get("OMNIBATCH_FFPROBE", "ffprobe")

DEFAULT_PROBE_TIMEOUT_S = 60.0
DEFAULT_DECODE_TIMEOUT_S = 900.0  # a whole 3-hour MP3 decodes in well under a minute

# Demuxers of ordinary audio/video files. None of them opens a second file or a URL
# (mov would follow external data references, but only with `enable_drefs`, off by default).
ACCEPTED_FORMATS: tuple[str, ...] = (
    "wav", "w64", "aiff", "caf", "au", "flac", "mp3", "aac", "ac3", "eac3", "dts",
    "amr", "amrnb", "amrwb", "wv", "ape", "tta", "ogg", "mov", "matroska", "webm",
    "avi", "asf", "flv", "mpegts", "mpeg", "mxf", "dv",
)  # fmt: skip
FORMAT_WHITELIST = ",".join(ACCEPTED_FORMATS)

# Lines of ffmpeg stderr that mean the data stops before the container says it should.
_TRUNCATION_MARKERS = ("partial file", "moov atom not found", "filesize and duration do not match")


def check_input(path: str | os.PathLike[str]) -> Path:
    """Return the absolute path of a regular, non-empty file, or raise MediaError."""
    p = Path(os.path.abspath(os.fspath(path)))
    try:
        st = os.stat(p)  # follows symlinks: a link to /dev/zero is a device
    except FileNotFoundError:
        raise MediaError(f"{p}: file not found") from None
    except PermissionError:
        raise MediaError(f"{p}: permission denied; check the file's permissions") from None
    except OSError as exc:
        raise MediaError(f"{p}: cannot be opened ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise MediaError(f"{p}: is a directory, not a media file")
    if not stat.S_ISREG(st.st_mode):
        raise MediaError(f"{p}: is not a regular file (a device, fifo or socket); omnibatch reads files only")
    if st.st_size == 0:
        raise MediaError(f"{p.name}: file is empty (0 bytes)")
    return p


def input_url(path: Path) -> str:
    """The name handed to ffmpeg: an explicit file: URL of an absolute path."""
    return f"file:{path}"


def input_options() -> dict[str, str]:
    """ffmpeg input options that confine a read to the one local file."""
    return {"protocol_whitelist": "file", "format_whitelist": FORMAT_WHITELIST}


def seconds(value: float) -> str:
    """A time for the ffmpeg command line; str() would write 1e-05, which ffmpeg rejects."""
    return f"{value:.6f}"


def ffmpeg_args(
    path: Path,
    *,
    stream: str,
    output: dict[str, str | int | float],
    start_s: float | None = None,
    duration_s: float | None = None,
) -> list[str]:
    """An ffmpeg command that decodes one stream ("a:0", "v:0") of `path` to stdout.

    `-ss` goes before `-i`: ffmpeg seeks in the demuxer, then decodes and drops samples up
    to the requested time, so a chunk late in a long file costs no more than an early one.
    The cut is exact for WAV/FLAC/MP4/Ogg; Matroska/WebM store whole-millisecond times and
    lossy codecs carry encoder delay, which can shift it by a few milliseconds.
    """
    import ffmpeg as ffmpeg_python  # the ffmpeg-python package, not this module

    opts: dict[str, str] = input_options()
    if start_s:
        opts["ss"] = seconds(start_s)
    if duration_s is not None:
        opts["t"] = seconds(duration_s)
    # ffmpeg-python hashes its arguments as strict UTF-8, which a file name that is not UTF-8
    # (held with surrogate escapes) fails; the real name goes in after, and reaches ffmpeg as its bytes.
    node = ffmpeg_python.input(_URL_PLACEHOLDER, **opts)[stream].output("pipe:", **output)
    args = node.global_args("-nostdin", "-hide_banner", "-loglevel", "error").compile(cmd=FFMPEG)
    return [input_url(path) if arg == _URL_PLACEHOLDER else arg for arg in args]


_URL_PLACEHOLDER = "file:/omnibatch/the-input"


def ffprobe_args(path: Path) -> list[str]:
    opts = input_options()
    return [
        FFPROBE, "-hide_banner",
        "-loglevel", "warning",  # warnings carry the truncation hints (see _TRUNCATION_MARKERS)
        "-protocol_whitelist", opts["protocol_whitelist"],
        "-format_whitelist", opts["format_whitelist"],
        "-show_format", "-show_streams", "-of", "json",
        "-i", input_url(path),
    ]  # fmt: skip


def run_ffprobe(path: Path, *, timeout_s: float = DEFAULT_PROBE_TIMEOUT_S) -> tuple[str, str]:
    """Run ffprobe on an already checked path; return (stdout JSON text, stderr text)."""
    with tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.run(
                ffprobe_args(path), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                timeout=timeout_s, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:  # subprocess.run kills and reaps the child
            raise MediaError(
                f"{path.name}: ffprobe did not finish within {timeout_s:g} s; "
                "the file may be damaged (or raise the probe timeout)"
            ) from None
        except FileNotFoundError:
            raise MediaError("ffprobe is not installed (apt install ffmpeg)") from None
        stderr = _read_tail(err)
    if proc.returncode != 0:
        raise MediaError(f"{path.name}: {describe_failure(stderr)}")
    return proc.stdout.decode("utf-8", "replace"), stderr


class FFmpegPipe:
    """A running ffmpeg whose stdout is read in place into caller buffers.

    A watchdog kills the process when the deadline passes; `finish()` then raises.
    """

    def __init__(self, args: Sequence[str], path: Path, timeout_s: float | None) -> None:
        self.path = path
        self.timeout_s = timeout_s
        self.timed_out = False
        self.stopped = False  # the reader had enough and killed ffmpeg on purpose
        self._err = tempfile.TemporaryFile()
        try:
            self.proc = subprocess.Popen(
                list(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._err, bufsize=0
            )
        except FileNotFoundError:
            self._err.close()
            raise MediaError("ffmpeg is not installed (apt install ffmpeg)") from None
        self._timer: threading.Timer | None = None
        self.restart_deadline()

    def restart_deadline(self) -> None:
        """Give the process `timeout_s` from now (streaming readers call this per block)."""
        if self._timer is not None:
            self._timer.cancel()
        if self.timeout_s is not None:
            self._timer = threading.Timer(self.timeout_s, self._expire)
            self._timer.daemon = True
            self._timer.start()

    def cancel_deadline(self) -> None:
        """Stop the clock, e.g. while a streaming consumer works on the last block."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self.timed_out = True
        self._kill()

    def _kill(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass

    def read_into(self, buf: memoryview) -> int:
        """Fill `buf` (bytes) from ffmpeg's stdout; return how many bytes came (short only at EOF)."""
        stream = self.proc.stdout
        assert stream is not None
        total, size = 0, len(buf)
        while total < size:
            got = stream.readinto(buf[total:])
            if not got:
                break
            total += got
        return total

    def stop(self) -> None:
        """End ffmpeg early, when the reader needs no more output."""
        self.stopped = True
        self._kill()

    def finish(self, *, what: str = "decode") -> None:
        """Wait for ffmpeg, release everything, and raise MediaError if it failed."""
        try:
            if self._timer is not None:
                self._timer.cancel()
            if self.proc.stdout is not None:
                self.proc.stdout.close()  # unblocks a writer we no longer read from
            returncode = self.proc.wait()
            stderr = _read_tail(self._err)
        finally:
            self._err.close()
        if self.timed_out:
            raise MediaError(
                f"{self.path.name}: ffmpeg did not finish the {what} within {self.timeout_s:g} s and was "
                "stopped; the file may be damaged, or raise the timeout for very long files"
            )
        if self.stopped:
            return
        if returncode != 0:
            raise MediaError(f"{self.path.name}: {describe_failure(stderr)}")
        if _is_truncated(stderr):
            raise MediaError(f"{self.path.name}: {describe_failure(stderr)}")

    def close(self) -> None:
        """Kill and reap without raising (for error paths and abandoned generators)."""
        if self._timer is not None:
            self._timer.cancel()
        self._kill()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc.wait()
        self._err.close()


@contextmanager
def open_pipe(args: Sequence[str], path: Path, *, timeout_s: float | None, what: str) -> Iterator[FFmpegPipe]:
    """Run ffmpeg for the body of a `with`; on normal exit check its status (and raise MediaError)."""
    pipe = FFmpegPipe(args, path, timeout_s)
    try:
        yield pipe
    except BaseException:
        pipe.close()
        raise
    pipe.finish(what=what)


def _read_tail(f, limit: int = 65536) -> str:
    f.seek(0, os.SEEK_END)
    size = f.tell()
    f.seek(max(0, size - limit))
    return f.read().decode("utf-8", "replace")


def _is_truncated(stderr: str) -> bool:
    low = stderr.lower()
    return any(m in low for m in _TRUNCATION_MARKERS)


_NOT_WHITELISTED = re.compile(r"\[([\w,]+) @ [^\]]*\] Format not on whitelist")


def describe_failure(stderr: str) -> str:
    """Turn ffmpeg's stderr into one short sentence a person can act on."""
    low = stderr.lower()
    m = _NOT_WHITELISTED.search(stderr)
    if m:
        fmt = m.group(1).split(",")[0]
        return (
            f"format '{fmt}' is not accepted: omnibatch reads plain audio/video files, not playlists, "
            "file lists, images or streams"
        )
    if "protocol not on whitelist" in low or "unsafe file name" in low:
        return "the file tries to make ffmpeg open another file or URL; refused"
    if "moov atom not found" in low:
        return "file is truncated or damaged (its MP4/MOV index is missing); re-download or re-encode it"
    if "filesize and duration do not match" in low or "partial file" in low:
        return "file is truncated (the data ends before its header says); re-download or re-encode it"
    if "matches no streams" in low and ":a" in low:
        return "no audio stream"
    if "matches no streams" in low and ":v" in low:
        return "no video stream"
    if "no such file or directory" in low:
        return "file not found"
    if "permission denied" in low:
        return "permission denied; check the file's permissions"
    if "is a directory" in low:
        return "is a directory, not a media file"
    if any(m in low for m in _NOT_MEDIA_MARKERS):
        return "not a media file ffmpeg can read (unknown or damaged format)"
    if ("decoder" in low and "not found" in low) or "unsupported codec" in low:
        return "uses a codec this ffmpeg cannot decode"
    detail = _detail(stderr)
    return f"ffmpeg failed: {detail}" if detail else "ffmpeg failed without saying why"


_NOT_MEDIA_MARKERS = (
    "invalid data found when processing input",
    "could not find codec parameters",
    "failed to read frame size",
    "misdetection possible",
)
_LOG_PREFIX = re.compile(r"^\[[^\]]* @ [^\]]*\]\s*")
_URL_PREFIX = re.compile(r"^file:.*?: ")


def _detail(stderr: str, limit: int = 200) -> str:
    """ffmpeg's own last words, without log prefixes or the (long) file name."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    if not lines:
        return ""
    return _URL_PREFIX.sub("", _LOG_PREFIX.sub("", lines[-1]))[:limit]

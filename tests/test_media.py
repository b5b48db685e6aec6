"""The media stage on real files made by ffmpeg: probe, audio decode, streaming, frame sampling,
and the guards that keep untrusted media from making ffmpeg read anything else.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import mediagen as gen
from omnibatch.errors import MediaError
from omnibatch.media import (
    AUDIO_EXTENSIONS,
    VIDEO_EXTENSIONS,
    Frames,
    decode_audio,
    probe,
    sample_frames,
    stream_audio,
)
from omnibatch.media.video import fit_size, sample_times, sampling_rate

SR = 16000
LONG_S = 20 * 60

pytestmark = pytest.mark.skipif(
    not (gen.has_tool("ffmpeg") and gen.has_tool("ffprobe")), reason="needs ffmpeg and ffprobe"
)


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media")


AUDIO_FILES = {
    # name: (make_audio kwargs, expected codec)
    "sine.wav": ({}, "pcm_s16le"),
    "sine.flac": ({}, "flac"),
    "sine.mp3": ({}, "mp3"),
    "sine.m4a": ({}, "aac"),
    "sine.aac": ({}, "aac"),
    "sine.ogg": ({}, "vorbis"),
    "sine.opus": ({}, "opus"),
    "stereo.wav": ({"channels": 2}, "pcm_s16le"),
}
VIDEO_FILES = {
    # name: (make_video kwargs, video codec, audio codec or None)
    "clip.mp4": ({}, "h264", "aac"),
    "clip.mkv": ({}, "h264", "flac"),
    "clip.webm": ({}, "vp9", "opus"),
    "vp8.webm": ({"vcodec": "libvpx"}, "vp8", "opus"),
    "silent.mp4": ({"audio": False}, "h264", None),
}


@pytest.fixture(scope="session")
def audio_files(media_dir) -> dict[str, Path]:
    return {name: gen.make_audio(media_dir / name, 3.0, **kw) for name, (kw, _) in AUDIO_FILES.items()}


@pytest.fixture(scope="session")
def video_files(media_dir) -> dict[str, Path]:
    return {name: gen.make_video(media_dir / name, 3.0, **kw) for name, (kw, _, _) in VIDEO_FILES.items()}


@pytest.fixture(scope="session")
def chirp_files(media_dir) -> dict[str, Path]:
    """30-second frequency sweeps: no two windows alike, so a wrong seek cannot go unnoticed."""
    files = {s: gen.make_audio(media_dir / f"chirp{s}", 30.0, signal="chirp") for s in
             (".wav", ".flac", ".mp3", ".m4a", ".ogg", ".opus")}  # fmt: skip
    files[".mp4"] = gen.make_video(media_dir / "chirp.mp4", 30.0, size=(64, 64), fps=5, signal="chirp")
    files[".webm"] = gen.make_video(media_dir / "chirp.webm", 30.0, size=(64, 64), fps=5, signal="chirp")
    return files


@pytest.fixture(scope="session")
def long_audio(media_dir) -> Path:
    """A 20-minute 16 kHz FLAC sine (~2 s to make)."""
    return gen.make_audio(media_dir / "long.flac", float(LONG_S), sample_rate=SR)


@pytest.fixture(scope="session")
def other_audio(media_dir) -> Path:
    """The file that playlists and lists below try to smuggle in: 5 s of 1 kHz."""
    return gen.make_audio(media_dir / "other.mp3", 5.0, frequency=1000.0)


# ---------------------------------------------------------------------------------------------- helpers


def dominant_hz(x: np.ndarray, rate: int = SR) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))


def ffmpeg_children() -> list:
    psutil = pytest.importorskip("psutil")
    procs = []
    for p in psutil.Process().children(recursive=True):
        try:
            if p.name() in ("ffmpeg", "ffprobe") and p.status() != psutil.STATUS_ZOMBIE:
                procs.append(p)
        except psutil.NoSuchProcess:
            pass
    return procs


def best_lag(part: np.ndarray, full: np.ndarray, start: int, at: int, window: int = 4000, search: int = 800):
    """The shift L minimising the RMS difference of part[at:at+window] and full[start+at+L:...]."""
    seg = part[at : at + window]
    errs = {}
    for lag in range(-search, search + 1):
        lo = start + at + lag
        if lo < 0 or lo + window > len(full):
            continue
        errs[lag] = float(np.sqrt(np.mean((seg - full[lo : lo + window]) ** 2)))
    lag = min(errs, key=errs.get)
    return lag, errs[lag]


# ---------------------------------------------------------------------------------------------- probe


@pytest.mark.parametrize("name", sorted(AUDIO_FILES))
def test_probe_audio_files(audio_files, name):
    info = probe(audio_files[name])
    _, codec = AUDIO_FILES[name]
    assert info.duration_s == pytest.approx(3.0, abs=0.1)
    assert info.kind == "audio" and info.has_audio and not info.has_video
    (a,) = info.audio_streams
    assert a.codec == codec
    assert a.sample_rate in (44100, 48000)  # opus is always 48 kHz
    assert a.channels == (2 if name.startswith("stereo") else 1)
    assert info.path == audio_files[name].resolve()


@pytest.mark.parametrize("name", sorted(VIDEO_FILES))
def test_probe_video_files(video_files, name):
    info = probe(video_files[name])
    _, vcodec, acodec = VIDEO_FILES[name]
    assert info.kind == "video"
    assert info.duration_s == pytest.approx(3.0, abs=0.15)
    (v,) = info.video_streams
    assert (v.codec, v.width, v.height) == (vcodec, 320, 240)
    assert v.fps == pytest.approx(25.0)
    if acodec is None:
        assert not info.has_audio
    else:
        assert [a.codec for a in info.audio_streams] == [acodec]


def test_probe_vertical_and_rotated_phone_video(media_dir):
    upright = gen.make_video(media_dir / "upright.mp4", 1.0, size=(192, 320), fps=10, audio=False)
    rotated = gen.make_video(media_dir / "rotated.mp4", 1.0, size=(320, 192), fps=10, audio=False, rotate=90)
    for path in (upright, rotated):
        (v,) = probe(path).video_streams
        assert (v.width, v.height) == (192, 320), path.name  # the displayed size, portrait


def test_probe_cover_art_is_not_video(media_dir, audio_files):
    png = gen.make_image(media_dir / "cover.png")
    tagged = gen.add_cover_art(audio_files["sine.mp3"], png, media_dir / "tagged.mp3")
    info = probe(tagged)
    assert [s.attached_pic for s in info.streams if s.kind == "video"] == [True]
    assert info.kind == "audio" and not info.has_video
    assert decode_audio(tagged).size == pytest.approx(3 * SR, rel=0.02)
    with pytest.raises(MediaError, match="no video stream"):
        sample_frames(tagged)


def test_short_clips_under_one_second(media_dir):
    a = gen.make_audio(media_dir / "short.mp3", 0.4)
    v = gen.make_video(media_dir / "short.mp4", 0.5, fps=25)
    assert probe(a).duration_s == pytest.approx(0.4, abs=0.06)
    assert decode_audio(a).size == pytest.approx(0.4 * SR, abs=0.06 * SR)
    duration = probe(v).duration_s
    assert duration == pytest.approx(0.5, abs=0.1)
    frames = sample_frames(v)  # 2 fps over ~0.5 s (the AAC track may run a little longer)
    assert frames.timestamps_s[0] == 0.0 and all(t < duration for t in frames.timestamps_s)
    assert frames.frames.shape[0] == len(frames.timestamps_s) in (1, 2)
    assert decode_audio(v).size > 0.3 * SR


# ---------------------------------------------------------------------------------------------- audio


@pytest.mark.parametrize("name", sorted(AUDIO_FILES))
def test_decode_audio_files(audio_files, name):
    x = decode_audio(audio_files[name])
    assert x.dtype == np.float32 and x.ndim == 1
    assert x.size == pytest.approx(3 * SR, rel=0.02)
    assert dominant_hz(x) == pytest.approx(440, abs=3)
    assert 0.05 < float(np.sqrt(np.mean(x**2))) < 0.5


@pytest.mark.parametrize("name", [n for n, (_, _, a) in VIDEO_FILES.items() if a])
def test_decode_audio_track_of_videos(video_files, name):
    x = decode_audio(video_files[name], sample_rate=8000)
    assert x.size == pytest.approx(3 * 8000, rel=0.03)
    assert dominant_hz(x, 8000) == pytest.approx(440, abs=3)


def test_video_without_audio(video_files):
    assert not probe(video_files["silent.mp4"]).has_audio
    with pytest.raises(MediaError, match="silent.mp4: no audio stream"):
        decode_audio(video_files["silent.mp4"])
    with pytest.raises(MediaError, match="no audio stream"):
        list(stream_audio(video_files["silent.mp4"]))


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".mp3", ".m4a", ".ogg", ".opus", ".mp4", ".webm"])
def test_region_decode_matches_slice_of_full_decode(chirp_files, suffix):
    path = chirp_files[suffix]
    full = decode_audio(path)
    part = decode_audio(path, start_s=10.0, duration_s=10.0)
    assert part.size == pytest.approx(10 * SR, abs=32)
    start = 10 * SR
    # Timestamps in WebM are whole milliseconds and Opus/AAC carry encoder delay: allow 10 ms of
    # offset between the two timelines; within a window the samples must then match.
    tolerance = 0 if suffix in (".wav", ".flac") else SR // 100
    for at in (2000, 80000, 150000):
        lag, rms = best_lag(part, full, start, at)
        assert abs(lag) <= tolerance, (suffix, at, lag)
        assert rms < 0.03, (suffix, at, rms)  # the chirp's own RMS is 0.35
    if suffix in (".wav", ".flac"):
        inner = slice(100, part.size - 100)  # the resampler's edges differ slightly
        np.testing.assert_allclose(part[inner], full[start : start + part.size][inner], atol=1e-3)


def test_region_past_the_end_has_no_audio(audio_files):
    with pytest.raises(MediaError, match="no audio could be decoded"):
        decode_audio(audio_files["sine.wav"], start_s=10.0, duration_s=5.0)


def test_region_arguments_are_checked(audio_files):
    with pytest.raises(ValueError):
        decode_audio(audio_files["sine.wav"], start_s=-1.0)
    with pytest.raises(ValueError):
        decode_audio(audio_files["sine.wav"], duration_s=0.0)


def test_stream_audio_long_file_in_flat_memory(long_audio):
    block = 30 * SR
    sizes = []
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        for b in stream_audio(long_audio, block_s=30.0):
            assert b.dtype == np.float32
            sizes.append(b.size)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sizes[:-1] == [block] * (len(sizes) - 1)
    assert sum(sizes) == pytest.approx(LONG_S * SR, abs=SR // 100)
    assert len(sizes) == LONG_S // 30
    # 76.8 MB of samples went through; at most a couple of 1.9 MB blocks were alive at once.
    assert peak < 3 * block * 4, peak


def test_stream_audio_blocks_equal_the_full_decode(chirp_files):
    path = chirp_files[".flac"]
    joined = np.concatenate(list(stream_audio(path, block_s=7.0)))
    full = decode_audio(path)
    np.testing.assert_array_equal(joined, full)


def test_stream_audio_closed_early_stops_ffmpeg(long_audio):
    blocks = stream_audio(long_audio, block_s=10.0)
    first = next(blocks)
    assert first.size == 10 * SR
    assert ffmpeg_children(), "ffmpeg should be running while the stream is open"
    blocks.close()
    assert not ffmpeg_children()


def test_decode_audio_holds_the_samples_once(long_audio):
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        x = decode_audio(long_audio)  # unknown length: the buffer grows in place
        _, peak_grow = tracemalloc.get_traced_memory()
        del x
        tracemalloc.reset_peak()
        y = decode_audio(long_audio, start_s=60.0, duration_s=600.0)  # known length: one allocation
        _, peak_known = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    out_bytes = LONG_S * SR * 4
    assert peak_grow < 1.6 * out_bytes, peak_grow / out_bytes  # a bytes copy + array copy would be >= 2x
    assert y.size == pytest.approx(600 * SR, abs=2)
    assert peak_known < 1.05 * y.nbytes


def test_timeout_kills_ffmpeg(long_audio):
    t0 = time.monotonic()
    with pytest.raises(MediaError, match=r"long.flac: ffmpeg did not finish the audio decode within 0.02 s"):
        decode_audio(long_audio, timeout_s=0.02)
    assert time.monotonic() - t0 < 5
    assert not ffmpeg_children()
    # The same call with room to finish works: the file was fine, the deadline was not.
    assert decode_audio(long_audio, start_s=0.0, duration_s=1.0).size == SR


def test_odd_file_names_are_plain_files(media_dir, audio_files):
    odd_dir = media_dir / "odd"
    odd_dir.mkdir(exist_ok=True)
    names = ["-i.wav", "http:evil.wav", "a:b -y.mp3", "concat:x.wav"]
    for name in names:
        path = odd_dir / name
        path.write_bytes(audio_files["sine.mp3" if name.endswith(".mp3") else "sine.wav"].read_bytes())
        assert probe(path).duration_s == pytest.approx(3.0, abs=0.1)
        assert decode_audio(path).size == pytest.approx(3 * SR, rel=0.02)
    # Relative paths (as a manifest might give) work too, including one starting with '-'.
    cwd = os.getcwd()
    try:
        os.chdir(odd_dir)
        assert decode_audio("-i.wav").size == pytest.approx(3 * SR, rel=0.02)
    finally:
        os.chdir(cwd)


# ---------------------------------------------------------------------------------------------- bad inputs


def test_missing_path_and_directory(media_dir):
    with pytest.raises(MediaError, match="file not found"):
        probe(media_dir / "nope.wav")
    with pytest.raises(MediaError, match="file not found"):
        decode_audio(media_dir / "nope.wav")
    with pytest.raises(MediaError, match="is a directory"):
        probe(media_dir)
    with pytest.raises(MediaError, match="is a directory"):
        list(stream_audio(media_dir))


def test_devices_and_fifos_are_refused(media_dir):
    link = media_dir / "zero.wav"
    if not link.exists():
        link.symlink_to("/dev/zero")
    with pytest.raises(MediaError, match="not a regular file"):
        decode_audio(link)
    fifo = media_dir / "fifo.wav"
    if not fifo.exists():
        os.mkfifo(fifo)
    with pytest.raises(MediaError, match="not a regular file"):
        probe(fifo)  # would block forever if ffprobe opened it


def test_empty_file(media_dir):
    empty = gen.write_bytes(media_dir / "empty.wav", b"")
    with pytest.raises(MediaError, match="empty.wav: file is empty"):
        probe(empty)
    with pytest.raises(MediaError, match="file is empty"):
        decode_audio(empty)


def test_random_bytes(media_dir):
    rng = np.random.default_rng(1234)
    for name in ("noise.mp3", "noise.mp4", "noise.bin"):
        path = gen.write_bytes(media_dir / name, rng.integers(0, 256, 50_000, dtype=np.uint8).tobytes())
        # ffmpeg tries the demuxer the suffix names: for .mp4 that one reports a missing index.
        expected = "not a media file ffmpeg can read"
        if name.endswith(".mp4"):
            expected = "file is truncated or damaged"
        with pytest.raises(MediaError, match=f"{name}: {expected}"):
            probe(path)
        with pytest.raises(MediaError, match=expected):
            decode_audio(path)


def test_truncated_files(media_dir, audio_files):
    # MP4 with its index at the end (ffmpeg's default), cut in half: no index at all.
    whole = gen.make_video(media_dir / "whole.mp4", 4.0)
    cut = gen.truncate_copy(whole, media_dir / "cut.mp4")
    with pytest.raises(MediaError, match="cut.mp4: file is truncated"):
        probe(cut)
    with pytest.raises(MediaError, match="file is truncated"):
        decode_audio(cut)
    # MP4 with its index first ("faststart"): probes, but the decode runs out of data.
    fast = gen.faststart_copy(whole, media_dir / "fast.mp4")
    cut_fast = gen.truncate_copy(fast, media_dir / "cut-fast.mp4")
    with pytest.raises(MediaError, match="cut-fast.mp4: file is truncated"):
        decode_audio(cut_fast)
    # MP3 whose header gives the full length: caught by probe.
    mp3 = gen.make_audio(media_dir / "whole.mp3", 10.0)
    cut_mp3 = gen.truncate_copy(mp3, media_dir / "cut.mp3")
    with pytest.raises(MediaError, match="cut.mp3: file is truncated"):
        probe(cut_mp3)


def _unguarded_ffprobe_duration(path: Path) -> tuple[str, float]:
    """What ffprobe does with no format whitelist: proof that the attack files are real."""
    cmd = ["ffprobe", "-v", "error", "-protocol_whitelist", "file",
           "-show_entries", "format=format_name,duration", "-of", "default=nw=1", f"file:{path}"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=False).stdout
    fields = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    duration = fields.get("duration", "N/A")
    return fields.get("format_name", ""), float(duration) if duration != "N/A" else 0.0


@pytest.mark.parametrize("target", ["relative", "absolute"])
def test_hls_playlist_disguised_as_mp3_does_not_open_other_files(media_dir, other_audio, target):
    name = other_audio.name if target == "relative" else str(other_audio)
    playlist = media_dir / f"playlist-{target}.mp3"
    playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:5.0,\n{name}\n#EXT-X-ENDLIST\n")
    if target == "relative":
        # Without the whitelist ffmpeg really would play the other file through this playlist.
        assert _unguarded_ffprobe_duration(playlist) == ("hls", pytest.approx(5.0, abs=0.2))
    with pytest.raises(MediaError, match="format 'hls' is not accepted"):
        probe(playlist)
    with pytest.raises(MediaError, match="format 'hls' is not accepted"):
        decode_audio(playlist)
    with pytest.raises(MediaError, match="format 'hls' is not accepted"):
        list(stream_audio(playlist))
    with pytest.raises(MediaError, match="format 'hls' is not accepted"):
        sample_frames(playlist, backend="ffmpeg")


def test_ffconcat_list_disguised_as_wav_does_not_open_other_files(media_dir, other_audio):
    listing = media_dir / "list.wav"
    listing.write_text(f"ffconcat version 1.0\nfile {other_audio.name}\n")
    assert _unguarded_ffprobe_duration(listing)[0] == "concat"  # ffmpeg alone would follow it
    with pytest.raises(MediaError, match="format 'concat' is not accepted"):
        probe(listing)
    with pytest.raises(MediaError, match="format 'concat' is not accepted"):
        decode_audio(listing)
    # Nothing of the other file's 1 kHz tone came out through any path: every call raised.


def test_other_readers_of_other_files_are_refused(media_dir):
    png = gen.make_image(media_dir / "picture.mp4")
    with pytest.raises(MediaError, match="format 'png_pipe' is not accepted"):
        probe(png)
    sdp = media_dir / "stream.mp3"
    sdp.write_text("v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio 5004 RTP/AVP 0\n")
    with pytest.raises(MediaError, match="format 'sdp' is not accepted"):
        decode_audio(sdp, timeout_s=10)


def test_format_whitelist_is_honoured_by_this_ffmpeg(audio_files):
    # A whitelist without wav must refuse a plain wav file: if ffmpeg ignored the option
    # every guard above would be decoration.
    proc = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-protocol_whitelist", "file", "-format_whitelist", "flac,mp3",
         "-i", f"file:{audio_files['sine.wav']}", "-f", "null", "-"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode != 0 and "Format not on whitelist" in proc.stderr


# ---------------------------------------------------------------------------------------------- video


def test_budget_arithmetic():
    assert sampling_rate(10.0, fps=2.0, max_frames=64, source_fps=25.0) == 2.0
    assert sampling_rate(3600.0, fps=2.0, max_frames=64, source_fps=25.0) == pytest.approx(64 / 3600)
    assert sampling_rate(10.0, fps=50.0, max_frames=1000, source_fps=25.0) == 25.0
    assert sample_times(0.0, 10.0, 0.8, 8) == pytest.approx([i * 1.25 for i in range(8)])
    assert sample_times(5.0, 5.3, 2.0, 64) == [5.0]
    assert len(sample_times(0.0, 1.9, 2.0, 64)) == 4


@pytest.mark.parametrize(
    "size,max_pixels",
    [
        ((1920, 1080), 262144), ((1080, 1920), 262144), ((320, 240), 262144),
        ((100, 3000), 65536), ((3840, 16), 4096),
    ],  # fmt: skip
)
def test_fit_size(size, max_pixels):
    w, h = fit_size(*size, max_pixels)
    assert w % 32 == 0 and h % 32 == 0 and w >= 32 and h >= 32
    assert w * h <= max_pixels
    if min(w, h) >= 128:  # thin frames lose aspect to the 32-pixel minimum side
        assert (w / h) == pytest.approx(size[0] / size[1], rel=0.15)


@pytest.mark.parametrize("name", ["clip.mp4", "clip.mkv", "clip.webm", "vp8.webm", "silent.mp4"])
@pytest.mark.parametrize("backend", ["decord", "ffmpeg"])
def test_sample_frames(video_files, name, backend):
    if backend == "decord":
        pytest.importorskip("decord")
    fr = sample_frames(video_files[name], fps=2.0, backend=backend)
    assert isinstance(fr, Frames)
    # 3 s of picture (WebM gives no stream duration and its audio runs a few ms longer, so 3.0 s
    # is a sample time there, but no frame is nearest to it: both backends drop it).
    count = 6
    assert fr.frames.dtype == np.uint8 and fr.frames.shape == (count, 256, 320, 3)
    assert fr.fps == 2.0 and fr.timestamps_s == pytest.approx([0.5 * i for i in range(count)])
    # testsrc2 moves: consecutive samples differ, and they are real pictures, not black.
    assert fr.frames.mean() > 30
    assert np.abs(fr.frames[1].astype(int) - fr.frames[0]).mean() > 1


def test_decord_and_ffmpeg_agree(media_dir):
    pytest.importorskip("decord")
    path = gen.make_video(media_dir / "agree.mp4", 4.0, size=(320, 240), fps=10, audio=False)
    a = sample_frames(path, fps=2.0, backend="decord")
    b = sample_frames(path, fps=2.0, backend="ffmpeg")
    assert a.frames.shape == b.frames.shape and a.timestamps_s == b.timestamps_s
    diff = np.abs(a.frames.astype(int) - b.frames).mean(axis=(1, 2, 3))
    assert diff.max() < 3, diff
    # ...and the agreement means something: neighbouring frames are further apart than that.
    assert np.abs(a.frames[1].astype(int) - b.frames[0]).mean() > 2 * diff.max()


def test_frame_budget_and_region(media_dir):
    path = gen.make_video(media_dir / "ten.mp4", 10.0, size=(640, 360), fps=10, audio=False)
    fr = sample_frames(path, fps=2.0, max_frames=8, max_pixels=64 * 32 * 32)
    assert fr.frames.shape[0] == 8 and fr.fps == pytest.approx(0.8)
    h, w = fr.frames.shape[1:3]
    assert w * h <= 64 * 32 * 32 and w % 32 == 0 and h % 32 == 0 and w > h
    region = sample_frames(path, fps=1.0, start_s=4.0, end_s=7.0)
    assert region.timestamps_s == pytest.approx([4.0, 5.0, 6.0])
    with pytest.raises(MediaError, match="past the end"):
        sample_frames(path, start_s=20.0)
    with pytest.raises(ValueError):
        sample_frames(path, start_s=5.0, end_s=4.0)


def test_long_span_seeks_per_frame_with_ffmpeg(media_dir):
    path = gen.make_video(media_dir / "minute.mp4", 60.0, size=(160, 96), fps=5, audio=False)
    fr = sample_frames(path, fps=2.0, max_frames=6, backend="ffmpeg")  # 10 s apart: one seek per frame
    assert fr.timestamps_s == pytest.approx([0, 10, 20, 30, 40, 50])
    assert fr.frames.shape == (6, 96, 160, 3)
    if pytest.importorskip("decord"):
        ref = sample_frames(path, fps=2.0, max_frames=6, backend="decord")
        assert np.abs(ref.frames.astype(int) - fr.frames).mean() < 8


def test_rotated_video_frames_are_upright(media_dir):
    plain = gen.make_video(media_dir / "plain.mp4", 1.0, size=(320, 192), fps=10, audio=False)
    turned = gen.make_video(media_dir / "turned.mp4", 1.0, size=(320, 192), fps=10, audio=False, rotate=90)
    a = sample_frames(plain, fps=2.0)
    b = sample_frames(turned, fps=2.0, backend="ffmpeg")
    assert a.frames.shape == (2, 192, 320, 3) and b.frames.shape == (2, 320, 192, 3)
    errors = [np.abs(np.rot90(a.frames[0], k).astype(int) - b.frames[0]).mean() for k in (1, -1)]
    assert min(errors) < 3 and max(errors) > 20, errors
    if importlib.util.find_spec("decord"):  # decord applies the rotation too, the same way
        c = sample_frames(turned, fps=2.0, backend="decord")
        assert c.frames.shape == b.frames.shape
        assert np.abs(c.frames.astype(int) - b.frames).mean() < 3


def test_falls_back_to_ffmpeg_without_decord(video_files, monkeypatch):
    monkeypatch.setitem(sys.modules, "decord", None)  # `import decord` now raises ImportError
    fr = sample_frames(video_files["clip.mp4"], fps=1.0)
    assert fr.frames.shape == (3, 256, 320, 3)
    with pytest.raises(ImportError, match="pip install decord"):
        sample_frames(video_files["clip.mp4"], backend="decord")


def test_audio_only_file_has_no_frames(audio_files):
    with pytest.raises(MediaError, match="no video stream"):
        sample_frames(audio_files["sine.wav"])


# ---------------------------------------------------------------------------------------------- package


def test_extensions_and_light_import():
    assert ".mp3" in AUDIO_EXTENSIONS and ".mp4" in VIDEO_EXTENSIONS
    assert all(e.startswith(".") and e == e.lower() for e in AUDIO_EXTENSIONS | VIDEO_EXTENSIONS)
    code = "import sys, omnibatch.media; print([m for m in ('decord', 'torch') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

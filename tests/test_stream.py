"""One decode pass per file: VAD, chunk planning and each chunk's samples from one ffmpeg stream.

Real media throughout: espeak-ng speech laid out with known pauses, written by ffmpeg.
"""

from __future__ import annotations

import subprocess
import threading
import tracemalloc
import wave
from pathlib import Path

import numpy as np
import pytest
from _longform_media import PASSAGE, SAMPLE_RATE, have_espeak, lay_out, speak
from mediagen import make_video, truncate_copy, write_bytes

from omnibatch.chunking import ChunkingOptions, plan_chunks, plan_fixed_chunks
from omnibatch.clipping import ClipOptions, plan_clips
from omnibatch.errors import MediaError
from omnibatch.media import decode_audio, probe, stream_audio
from omnibatch.media.ffmpeg import FFMPEG
from omnibatch.packing import pack_chunks, packing_options
from omnibatch.pipeline.stream import BLOCK_S, StreamStats, stream_clips, stream_speech_chunks
from omnibatch.vad import detect_speech

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.skipif(not have_espeak(), reason="needs espeak-ng and ffmpeg")

OPT = ChunkingOptions(max_chunk_s=10.0, overlap_s=1.0, pad_s=0.2)


def write_wav(path: Path, audio: np.ndarray) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def talk(tmp_path_factory):
    """40 s of sentences with short, medium and long pauses: a 16 kHz FLAC (decodes to the
    same samples however it is cut) and a 44.1 kHz MP3 (resampled: seeks shift the phase)."""
    tmp = tmp_path_factory.mktemp("talk")
    s = PASSAGE.split(". ")
    audio, truth = lay_out(1.5, speak(s[0]), 0.8, speak(s[1]), 3.5, speak(s[2]), 0.6, speak(s[3]), 5.0,
                           speak(s[4]), 1.0)  # fmt: skip
    wav = write_wav(tmp / "talk.wav", audio)
    flac, mp3 = tmp / "talk.flac", tmp / "talk.mp3"
    ffmpeg("-i", str(wav), "-c:a", "flac", str(flac))
    ffmpeg("-i", str(wav), "-ar", "44100", "-c:a", "libmp3lame", str(mp3))
    return flac, mp3, truth


@pytest.fixture(scope="module")
def twenty_minutes(tmp_path_factory):
    """A 20-minute 16 kHz FLAC: one minute of speech and pauses, looped."""
    tmp = tmp_path_factory.mktemp("long")
    s = PASSAGE.split(". ")
    minute, _ = lay_out(speak(s[0]), 2.0, speak(s[1]), 0.7, speak(s[2]), 4.0, speak(s[5]), 0.4, speak(s[6]))
    minute = np.resize(minute, 60 * SAMPLE_RATE)
    wav = write_wav(tmp / "minute.wav", minute)
    out = tmp / "twenty.flac"
    ffmpeg("-stream_loop", "19", "-i", str(wav), "-c:a", "flac", str(out))
    return out


@pytest.fixture
def ffmpeg_runs(monkeypatch):
    """Every ffmpeg process started (not ffprobe), from any thread."""
    started: list[subprocess.Popen] = []
    real = subprocess.Popen

    def counting(args, *a, **kw):
        proc = real(args, *a, **kw)
        if args and args[0] == FFMPEG:
            started.append(proc)
        return proc

    monkeypatch.setattr(subprocess, "Popen", counting)
    return started


def duration(path: Path) -> float:
    return probe(path).duration_s


# -- the plan ---------------------------------------------------------------------------------


@pytest.mark.parametrize("read_ahead", [0, 2])
def test_one_ffmpeg_process_gives_the_offline_plan(talk, ffmpeg_runs, read_ahead):
    flac, _, truth = talk
    d = duration(flac)
    got = list(stream_speech_chunks(flac, d, OPT, item_id="t", read_ahead=read_ahead))
    assert len(ffmpeg_runs) == 1  # no second decode, no seek
    chunks = [c for c, _ in got]
    # The same cuts as today's two passes (VAD over the stream, then plan_chunks).
    assert chunks == plan_chunks(detect_speech(stream_audio(flac)), d, OPT, item_id="t")
    assert [c.index for c in chunks] == list(range(len(chunks))) and len(chunks) >= 5
    for a, b in truth:  # the VAD in the stream found every sentence
        for t in np.linspace(a + 0.1, b - 0.1, 50):
            assert any(c.start_s <= t <= c.end_s for c in chunks), (t, chunks)


def test_samples_equal_seek_decoded_ones(talk):
    flac, mp3, _ = talk
    for c, audio in stream_speech_chunks(flac, duration(flac), OPT, item_id="t"):
        ref = decode_audio(flac, start_s=c.start_s, duration_s=c.duration_s)
        assert abs(audio.size - ref.size) <= 2
        n = min(audio.size, ref.size)
        np.testing.assert_array_equal(audio[:n], ref[:n])  # no resampling: exactly the same samples
    # A 44.1 kHz MP3 is resampled; a seek starts the resampler at a fraction of a sample.
    for c, audio in stream_speech_chunks(mp3, duration(mp3), OPT, item_id="t"):
        ref = decode_audio(mp3, start_s=c.start_s, duration_s=c.duration_s)
        assert abs(audio.size - ref.size) <= 2
        n, edge = min(audio.size, ref.size), 400
        a, r = audio[edge : n - edge], ref[edge : n - edge]
        assert np.corrcoef(a, r)[0, 1] > 0.99
        assert np.sqrt(np.mean((a - r) ** 2) / np.mean(r**2)) < 0.15


def test_packed_speech_from_one_stream(talk, ffmpeg_runs):
    """Packed chunks: pieces cut at every long pause, packed up to max_chunk_s of audio, each
    chunk's samples its pieces' samples one after another; one ffmpeg process."""
    flac, _, truth = talk
    d = duration(flac)
    opt = ChunkingOptions(max_chunk_s=20.0, overlap_s=1.0, pad_s=0.2)  # room for two sentences or three
    got = list(stream_speech_chunks(flac, d, opt, item_id="t", pack=True))
    assert len(ffmpeg_runs) == 1
    chunks = [c for c, _ in got]
    pieces = plan_chunks(detect_speech(stream_audio(flac)), d, packing_options(opt), item_id="t")
    assert chunks == pack_chunks(pieces, opt.max_chunk_s, item_id="t")  # the offline plan, online
    assert len(chunks) < len(plan_chunks(detect_speech(stream_audio(flac)), d, opt))  # fewer, fuller
    assert any(len(c.pieces) > 1 for c in chunks)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    whole = decode_audio(flac)
    for c, audio in got:
        assert c.duration_s <= opt.max_chunk_s + 1e-6
        assert c.spans[0][0] == c.start_s and c.spans[-1][1] == c.end_s
        ref = np.concatenate([whole[round(a * SAMPLE_RATE) : round(b * SAMPLE_RATE)] for a, b in c.spans])
        assert abs(audio.size - ref.size) <= 2 * len(c.spans)
        n = min(audio.size, ref.size)
        np.testing.assert_array_equal(audio[:n], ref[:n])
    for a, b in truth:  # every sentence is inside some piece
        for t in np.linspace(a + 0.1, b - 0.1, 50):
            assert any(x <= t <= y for c in chunks for x, y in c.spans), t


def test_fixed_chunks_when_vad_is_off(talk, ffmpeg_runs):
    flac, _, _ = talk
    d = duration(flac)
    got = list(stream_speech_chunks(flac, d, OPT, None, item_id="f"))
    assert len(ffmpeg_runs) == 1
    assert [c for c, _ in got] == plan_fixed_chunks(d, OPT.max_chunk_s, OPT.overlap_s, item_id="f")
    for c, audio in got[:2] + got[-1:]:
        np.testing.assert_array_equal(audio, decode_audio(flac, start_s=c.start_s, duration_s=c.duration_s))


def test_clips_and_their_audio_from_one_stream(talk, ffmpeg_runs):
    flac, _, _ = talk
    d = duration(flac)
    opt = ClipOptions(clip_s=8.0)
    got = list(stream_clips(flac, d, opt, vad=True, with_audio=True, item_id="c"))
    assert len(ffmpeg_runs) == 1
    assert [c for c, _ in got] == plan_clips(d, detect_speech(stream_audio(flac)), opt, item_id="c")
    for c, audio in got:
        np.testing.assert_array_equal(audio, decode_audio(flac, start_s=c.start_s, duration_s=c.duration_s))
    del ffmpeg_runs[:]
    silent = list(stream_clips(flac, d, opt, vad=True, with_audio=False, item_id="c"))
    assert [c for c, _ in silent] == [c for c, _ in got] and all(a is None for _, a in silent)
    assert len(ffmpeg_runs) == 1  # the VAD's stream, no audio kept
    # Without VAD and without audio (a video with no sound) nothing is decoded at all.
    del ffmpeg_runs[:]
    plain = list(stream_clips(flac, d, opt, vad=False, with_audio=False, item_id="c"))
    assert [c for c, _ in plain] == plan_clips(d, (), opt, item_id="c") and not ffmpeg_runs


def test_clips_after_the_sound_ends_get_no_samples(talk):
    flac, _, _ = talk
    d = duration(flac)
    clips = stream_clips(flac, d + 30.0, ClipOptions(clip_s=10.0), vad=False, with_audio=True, item_id="c")
    got = list(clips)
    assert got[-1][0].end_s == pytest.approx(d + 30.0)
    assert got[-1][1].size == 0  # the caption task sends such a clip without sound
    assert sum(a.size for _, a in got) == pytest.approx(d * SAMPLE_RATE, abs=2)


# -- memory, errors, stopping -------------------------------------------------------------------


def test_buffer_stays_flat_over_twenty_minutes(twenty_minutes, ffmpeg_runs):
    opt = ChunkingOptions()  # 30 s chunks: a 60 s look-ahead
    stats = StreamStats()
    tracemalloc.start()
    try:
        count = 0
        for chunk, audio in stream_speech_chunks(twenty_minutes, 1200.0, opt, item_id="l", stats=stats):
            assert chunk.duration_s <= opt.max_chunk_s + 1e-6 and audio.size
            count += 1
            del audio
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(ffmpeg_runs) == 1 and count >= 40
    assert stats.audio_s == pytest.approx(1200.0, abs=0.1)
    # The buffer holds the look-ahead and a block (and the VAD's wait for silence), not the file.
    assert stats.peak_buffer_s <= 60.0 + BLOCK_S + 2.0, stats
    assert peak < 4 * (60.0 + BLOCK_S) * SAMPLE_RATE * 4  # bytes; the file's samples would be 77 MB


def test_closing_early_stops_ffmpeg_and_the_reader(twenty_minutes, ffmpeg_runs):
    chunks = stream_speech_chunks(twenty_minutes, 1200.0, ChunkingOptions(), item_id="l")
    next(chunks)
    chunks.close()
    (proc,) = ffmpeg_runs
    assert proc.poll() is not None  # killed and reaped, not left decoding 19 more minutes
    assert not [t for t in threading.enumerate() if t.name == "omnibatch-audio-reader"]


def test_damaged_and_silent_files_raise_media_error(tmp_path, ffmpeg_runs):
    garbage = write_bytes(tmp_path / "noise.mp3", bytes(range(256)) * 64)
    with pytest.raises(MediaError):
        list(stream_speech_chunks(garbage, 10.0, OPT, item_id="g"))
    video = make_video(tmp_path / "mute.mp4", 2.0, audio=False)
    with pytest.raises(MediaError, match="no audio stream"):
        list(stream_speech_chunks(video, 2.0, OPT, item_id="v"))
    with pytest.raises(MediaError, match="no audio stream"):
        list(stream_speech_chunks(video, 2.0, OPT, None, item_id="v"))
    with pytest.raises(MediaError, match="no audio stream"):
        list(stream_clips(video, 2.0, ClipOptions(), vad=True, with_audio=False, item_id="v"))
    del ffmpeg_runs[:]
    clips = list(stream_clips(video, 2.0, ClipOptions(), vad=False, with_audio=False, item_id="v"))
    assert [(c.start_s, c.end_s, a) for c, a in clips] == [(0.0, 2.0, None)] and not ffmpeg_runs
    cut = truncate_copy(make_video(tmp_path / "whole.mp4", 2.0), tmp_path / "cut.mp4")
    with pytest.raises(MediaError):
        list(stream_speech_chunks(cut, 2.0, OPT, item_id="t"))
    with pytest.raises(MediaError, match="not found"):
        list(stream_speech_chunks(tmp_path / "missing.wav", 2.0, OPT, item_id="m"))
    assert not [t for t in threading.enumerate() if t.name == "omnibatch-audio-reader"]


def test_nothing_to_do_for_a_file_without_duration(talk, ffmpeg_runs):
    flac, _, _ = talk
    assert list(stream_speech_chunks(flac, 0.0, OPT, item_id="z")) == []
    assert list(stream_clips(flac, 0.0, ClipOptions(), vad=True, with_audio=True, item_id="z")) == []
    assert not ffmpeg_runs

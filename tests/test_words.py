"""Word times from a token alignment, and their refinement on loudness: pure functions, no model."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from omnibatch.records import Word
from omnibatch.words import loudness_db, shift_words, silences, snap_to_speech, timed_words, token_start_times

SR = 16000


def tone(seconds: float, freq: float = 220.0, level: float = 0.3) -> np.ndarray:
    t = np.arange(round(seconds * SR)) / SR
    return (level * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def quiet(seconds: float, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (noise * rng.standard_normal(round(seconds * SR))).astype(np.float32)


def test_token_starts_are_the_first_frame_on_each_token():
    path = [(0, 0), (0, 1), (1, 2), (1, 3), (1, 4), (2, 5), (3, 9), (3, 10)]
    starts = token_start_times(path, 4, frames_per_s=50)
    assert starts.tolist() == pytest.approx([0.0, 0.04, 0.1, 0.18])
    # A token the path skips starts where the one before it did; times never go back.
    assert token_start_times([(0, 5), (2, 7)], 3, 50).tolist() == pytest.approx([0.1, 0.1, 0.14])


def test_timed_words_join_pieces_into_the_text_s_words():
    # " well", "-", "known", " fact", ".", end-of-text: words are the whitespace-separated runs.
    pieces = [" well", "-", "known", " fact", ".", ""]
    counts = [1, 1, 1, 1, 1, 1]
    starts = [0.0, 0.3, 0.35, 0.6, 0.9, 1.0, 1.0]
    probs = [0.9, 0.5, 0.7, 0.8, 0.4, 1.0]
    words = timed_words(pieces, counts, starts, probs)
    assert [w.text for w in words] == ["well-known", "fact."]
    assert [(w.start_s, w.end_s) for w in words] == [(0.0, 0.6), (0.6, 1.0)]
    assert words[0].probability == pytest.approx((0.9 + 0.5 + 0.7) / 3)
    assert words[1].probability == pytest.approx((0.8 + 0.4) / 2)


def test_timed_words_in_scripts_without_spaces_keep_each_piece():
    words = timed_words(["我", "们", "好"], [1, 2, 1], [0.0, 0.2, 0.3, 0.5, 0.7], None, spaced=False)
    assert [(w.text, w.start_s, w.end_s, w.probability) for w in words] == [
        ("我", 0.0, 0.2, None),
        ("们", 0.2, 0.5, None),
        ("好", 0.5, 0.7, None),
    ]


def test_timed_words_without_an_end_time_end_where_they_start():
    (word,) = timed_words([" hi"], [1], [0.4], [0.5])
    assert (word.start_s, word.end_s) == (0.4, 0.4)


def test_loudness_and_silences_of_tone_bursts():
    audio = np.concatenate([quiet(0.5), tone(0.4), quiet(0.3), tone(0.4), quiet(0.05), tone(0.3)])
    level = loudness_db(audio)
    assert level.size == int(np.ceil(audio.size / 160))
    found = silences(audio)
    # The 50 ms gap is shorter than a pause: it is not one.
    assert [(round(a, 2), round(b, 2)) for a, b in found] == [(0.0, 0.5), (0.9, 1.2)]


def test_no_silence_is_trusted_without_a_quiet_floor():
    rng = np.random.default_rng(1)
    assert silences((0.1 * rng.standard_normal(SR * 2)).astype(np.float32)) == []


def test_snap_moves_starts_out_of_the_pause_before_a_word():
    # Words at 0.5-0.9 and 1.5-1.9 s; the alignment gave the second word the pause before it.
    audio = np.concatenate([quiet(0.5, 1e-4), tone(0.4), quiet(0.6, 1e-4, 1), tone(0.4), quiet(0.5, 1e-4, 2)])
    aligned = [Word(0.42, 0.9, "one", 0.9), Word(0.9, 1.9, "two", 0.8)]
    snapped = snap_to_speech(aligned, audio)
    assert [w.text for w in snapped] == ["one", "two"] and snapped[1].probability == 0.8
    assert snapped[0].start_s == pytest.approx(0.5, abs=0.02)
    assert snapped[1].start_s == pytest.approx(1.5, abs=0.02)
    assert snapped[1].end_s == pytest.approx(1.9, abs=0.02)


def test_snap_pulls_a_late_start_back_to_the_end_of_its_pause():
    audio = np.concatenate([quiet(0.5, 1e-4), tone(0.4), quiet(0.6, 1e-4, 1), tone(0.4), quiet(0.5, 1e-4, 2)])
    aligned = [Word(0.5, 0.9, "one"), Word(1.62, 1.9, "two")]
    assert snap_to_speech(aligned, audio)[1].start_s == pytest.approx(1.5, abs=0.02)


def test_snap_ends_a_word_where_the_silence_after_it_begins():
    audio = np.concatenate([quiet(0.5, 1e-4), tone(0.4), quiet(1.0, 1e-4, 1), tone(0.4)])
    (word, _) = snap_to_speech([Word(0.5, 1.05, "one"), Word(1.9, 2.3, "two")], audio)
    assert word.end_s == pytest.approx(0.9, abs=0.02)


def test_snap_leaves_words_in_continuous_sound_alone():
    audio = np.concatenate([quiet(0.3, 1e-4), tone(2.0), quiet(0.3, 1e-4, 1)])
    aligned = [Word(0.3, 0.9, "a"), Word(0.9, 1.5, "b"), Word(1.5, 2.3, "c")]
    assert snap_to_speech(aligned, audio) == aligned


def test_snap_keeps_words_in_order_and_never_empty_of_sound():
    rng = np.random.default_rng(7)
    for trial in range(50):
        parts = []
        for _ in range(6):
            parts += [
                quiet(rng.uniform(0.0, 0.5), 1e-4, trial),
                tone(rng.uniform(0.1, 0.5), 150 + 50 * trial % 300),
            ]
        audio = np.concatenate(parts)
        duration = audio.size / SR
        cuts = np.sort(rng.uniform(0, duration, 7))
        aligned = [Word(float(a), float(b), f"w{k}") for k, (a, b) in enumerate(itertools.pairwise(cuts))]
        snapped = snap_to_speech(aligned, audio)
        ends = 0.0
        for w in snapped:
            assert ends - 1e-9 <= w.start_s <= w.end_s
            ends = w.end_s


def test_shift_words_moves_and_clamps():
    words = [Word(0.0, 0.5, "a"), Word(0.5, 1.5, "b", 0.2)]
    assert shift_words(words, 10.0, hi=11.0) == [Word(10.0, 10.5, "a"), Word(10.5, 11.0, "b", 0.2)]
    assert shift_words(None, 1.0) == []

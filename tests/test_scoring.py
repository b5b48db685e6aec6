"""WER and CER against references: the normalizer stated, corpus rates weighted by length."""

from __future__ import annotations

import pytest

from omnibatch.scoring import corpus_rate, corpus_wer, normalize_basic, score


def test_basic_normalizer_folds_case_punctuation_and_width():
    assert normalize_basic("The  Cat, sat — ON the MAT!") == "the cat sat on the mat"
    assert normalize_basic("Ｆｕｌｌ-width ＡＢＣ") == "full width abc"  # NFKC first


def test_word_and_character_errors_are_counted_after_normalizing():
    s = score("The cat sat on the mat.", "the cat sat on a mat")
    assert (s.reference_words, s.word_errors) == (6, 1) and s.wer == pytest.approx(1 / 6)
    assert s.cer == pytest.approx(s.char_errors / s.reference_chars) and s.char_errors == 3  # "the" -> "a"
    exact = score("The cat sat.", "the cat sat", "none")
    assert exact.word_errors == 2  # "The" and "sat." differ when nothing is normalized


def test_an_empty_transcript_deletes_every_reference_word():
    s = score("one two three", "")
    assert s.wer == 1.0 and s.cer == 1.0


def test_no_reference_words_gives_no_rate():
    assert score("", "hello").wer is None and score(" . ", "x").cer is None


def test_corpus_wer_weights_files_by_their_reference_length():
    long, short = score("a b c d e f g h i j", "a b c d e f g h i j"), score("one", "two")
    assert corpus_wer([long, short]) == pytest.approx(1 / 11)  # not the mean of 0.0 and 1.0
    assert corpus_rate([1, None, 2], [10, 5, 0]) == pytest.approx(0.1)


def test_unknown_normalizer_is_refused():
    with pytest.raises(ValueError, match="choose one of basic, none"):
        score("a", "a", "fancy")

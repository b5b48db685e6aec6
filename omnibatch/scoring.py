"""Word and character error rates of a transcript against a reference (jiwer), with a stated normalizer.

    score("The cat sat.", "the cat sat", "basic")   -> Score(wer=0.0, cer=0.0, ...)
    corpus_wer([s1, s2, ...])                        -> total word errors / total reference words

Normalizers (`--normalizer`), applied to reference and transcript alike:

    basic  Unicode NFKC, case folded, punctuation and symbols removed (Unicode
           categories P* and S*), whitespace collapsed. The usual choice when the
           reference and the model write punctuation and case differently.
    none   the texts as they are, split on whitespace.

A corpus WER is the sum of word errors over the sum of reference words, never
the mean of per-file rates (a short file would weigh as much as a long one).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass

NORMALIZERS = ("basic", "none")


def normalize_basic(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    kept = "".join(" " if unicodedata.category(c)[0] in "PS" else c for c in text)
    return " ".join(kept.split())


def normalize_none(text: str) -> str:
    return " ".join(text.split())


_NORMALIZE: dict[str, Callable[[str], str]] = {"basic": normalize_basic, "none": normalize_none}


@dataclass(frozen=True)
class Score:
    wer: float | None  # None when the reference has no words
    cer: float | None
    reference_words: int
    word_errors: int
    reference_chars: int
    char_errors: int


def score(reference: str, hypothesis: str, normalizer: str = "basic") -> Score:
    """The error counts of `hypothesis` against `reference` after `normalizer`."""
    import jiwer

    try:
        normalize = _NORMALIZE[normalizer]
    except KeyError:
        raise ValueError(f"unknown normalizer {normalizer!r}; choose one of {', '.join(NORMALIZERS)}") from None
    ref, hyp = normalize(reference or ""), normalize(hypothesis or "")
    ref_words, ref_chars = len(ref.split()), len(ref)
    if not ref_words:
        return Score(None, None, 0, len(hyp.split()), 0, len(hyp))
    words = jiwer.process_words(ref, hyp or "")
    word_errors = words.substitutions + words.deletions + words.insertions
    chars = jiwer.process_characters(ref, hyp or "")
    char_errors = chars.substitutions + chars.deletions + chars.insertions
    return Score(word_errors / ref_words, char_errors / ref_chars, ref_words, word_errors, ref_chars,
                 char_errors)


def corpus_rate(errors: Iterable[int | None], totals: Iterable[int | None]) -> float | None:
    """Sum of errors over sum of reference units (pairs where either is unknown are left out)."""
    e_sum = t_sum = 0
    for e, t in zip(errors, totals, strict=True):
        if e is not None and t:
            e_sum, t_sum = e_sum + e, t_sum + t
    return e_sum / t_sum if t_sum else None


def corpus_wer(scores: Iterable[Score]) -> float | None:
    scores = list(scores)
    return corpus_rate([s.word_errors for s in scores], [s.reference_words for s in scores])


class CorpusRates:
    """Corpus WER and CER of a tally that holds `reference_words`, `word_errors`, `reference_chars` and
    `char_errors` (errors summed over the scored rows, reference lengths likewise)."""

    reference_words: int
    word_errors: float
    reference_chars: int
    char_errors: float

    @property
    def corpus_wer(self) -> float | None:
        return self.word_errors / self.reference_words if self.reference_words else None

    @property
    def corpus_cer(self) -> float | None:
        return self.char_errors / self.reference_chars if self.reference_chars else None

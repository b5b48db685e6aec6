"""Word times from a token alignment, refined on the audio's loudness. Pure functions.

Whisper's cross-attention alignment (CTranslate2's `Whisper.align`, a dynamic
time warping path through the attention of its alignment heads) says where the
boundary between two tokens lies, not where a word's sound begins: the pause
before a word is given to the word, so its start lands where the last word
ended. `timed_words` turns the path into words; `snap_to_speech` then moves a
word's start out of a silence it begins in (and its end out of one it ends in),
using the loudness of the same audio. Words in continuous speech, with no
silence around them, keep the alignment's times.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from omnibatch.records import Word

SAMPLE_RATE = 16000
FRAME_S = 0.01  # loudness frames of 10 ms
_WINDOW_S = 0.01  # each frame measures its own 10 ms: a boundary lands on the frame it is in
# A stretch counts as silence when it is quieter than this share of the way from the recording's
# quiet floor to its speech level (in dB), and lasts at least MIN_SILENCE_S.
SILENCE_SHARE = 0.3
MIN_SILENCE_S = 0.06
MIN_RANGE_DB = 15.0  # a recording with less between floor and speech has no silence to trust
MAX_BELOW_SPEECH_DB = 40.0  # whatever the floor, this far below the speech level is silence
REACH_S = 0.2  # how far from an aligned start (or end) a silence may begin (or end) and still count
# A silence this long inside a word's aligned span is a pause, not a stop consonant's closure
# (50-100 ms in connected speech): the word starts after it, however early the alignment began it.
PAUSE_S = 0.12
MIN_WORD_S = 0.02  # snapping never leaves a word shorter than this


@dataclass(frozen=True)
class SnapOptions:
    silence_share: float = SILENCE_SHARE
    min_silence_s: float = MIN_SILENCE_S
    min_range_db: float = MIN_RANGE_DB
    reach_s: float = REACH_S
    pause_s: float = PAUSE_S


def token_start_times(alignments: Sequence[tuple[int, int]], count: int, frames_per_s: float) -> np.ndarray:
    """The time each of `count` tokens starts on the path of (token index, encoder frame) pairs.

    A token's start is the first frame the path spends on it; a token the path skips
    (it should not) starts where the token before it did.
    """
    starts = np.full(count, np.nan)
    for token, frame in alignments:
        if 0 <= token < count and np.isnan(starts[token]):
            starts[token] = frame / frames_per_s
    last = 0.0
    for k in range(count):
        if np.isnan(starts[k]):
            starts[k] = last
        last = starts[k] = max(starts[k], last)
    return starts


def timed_words(
    pieces: Sequence[str],
    piece_tokens: Sequence[int],
    token_starts: Sequence[float],
    token_probs: Sequence[float] | None = None,
    *,
    spaced: bool = True,
) -> list[Word]:
    """Words from text pieces that cover consecutive tokens.

    `pieces[k]` is the text of `piece_tokens[k]` consecutive tokens (whisper's word
    split, the end-of-text piece included or not); `token_starts` holds one start per
    token plus, where known, one for the token after the last (end of text), which ends
    the last word. In `spaced` scripts a piece that does not begin with a space (a
    hyphen, a closing quote, the rest of a word split by punctuation) belongs to the
    word before it, so that words are the text's whitespace-separated runs; otherwise
    (CJK) each piece is a word. A word's probability is the mean of its tokens'.
    """
    found: list[_Open] = []
    first, known = 0, len(token_starts)
    for text, n in zip(pieces, piece_tokens):
        if n <= 0:
            continue
        last = first + n
        start = float(token_starts[min(first, known - 1)])
        end = float(token_starts[last]) if last < known else start
        probs = [float(p) for p in token_probs[first:last]] if token_probs is not None else []
        first = last
        if not text.strip():
            continue
        if spaced and found and not text[:1].isspace():
            found[-1].text += text.strip()
            found[-1].end = max(end, found[-1].end)
            found[-1].probs += probs
        else:
            found.append(_Open(start, max(end, start), text.strip(), probs))
    return [Word(w.start, w.end, w.text, float(np.mean(w.probs)) if w.probs else None) for w in found]


@dataclass
class _Open:
    start: float
    end: float
    text: str
    probs: list[float]


def loudness_db(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Level in dB of each 10 ms frame."""
    hop, window = int(sample_rate * FRAME_S), int(sample_rate * _WINDOW_S)
    x = np.asarray(audio, dtype=np.float64)
    if x.size == 0:
        return np.zeros(0)
    frames = max(1, int(np.ceil(x.size / hop)))
    padded = np.concatenate([x, np.zeros(frames * hop + window - x.size)])
    power = np.square(padded)
    cumulative = np.concatenate([[0.0], np.cumsum(power)])
    starts = np.arange(frames) * hop
    mean = (cumulative[starts + window] - cumulative[starts]) / window
    return 10.0 * np.log10(mean + 1e-12)


def silences(audio: np.ndarray, options: SnapOptions = SnapOptions(),
             sample_rate: int = SAMPLE_RATE) -> list[tuple[float, float]]:
    """The silent stretches of `audio` (start, end in seconds), or [] when it has no clear floor."""
    level = loudness_db(audio, sample_rate)
    if level.size == 0:
        return []
    speech, floor = float(np.percentile(level, 95)), float(np.percentile(level, 5))
    if speech - floor < options.min_range_db:
        return []
    threshold = max(floor + options.silence_share * (speech - floor), speech - MAX_BELOW_SPEECH_DB)
    quiet = level <= threshold
    out: list[tuple[float, float]] = []
    k, n = 0, quiet.size
    while k < n:
        if not quiet[k]:
            k += 1
            continue
        j = k
        while j < n and quiet[j]:
            j += 1
        if (j - k) * FRAME_S >= options.min_silence_s:
            out.append((round(k * FRAME_S, 6), round(j * FRAME_S, 6)))
        k = j
    return out


def snap_to_speech(words: Sequence[Word], audio: np.ndarray, options: SnapOptions = SnapOptions(),
                   sample_rate: int = SAMPLE_RATE) -> list[Word]:
    """`words` (times in `audio`'s timeline, in order) with starts and ends moved out of silence.

    A word whose aligned start lies in, or just before, a silence (one that overlaps the
    `reach_s` after its start, ends after the previous word and before the word's own
    end) starts where that silence ends; the first such silence wins, so a stop
    consonant's closure inside the word is not taken for the pause before it. Failing
    that, a pause (a silence of `pause_s` or more) inside the word's aligned span means
    the alignment began the word in the sound before the pause: it starts after the last
    such pause. Ends likewise, the last silence that overlaps the `reach_s` before the
    end. Times never cross: a word starts at or after the previous word's end.
    """
    quiet = silences(audio, options, sample_rate)
    if not quiet or not words:
        return list(words)
    out: list[Word] = []
    previous_end = 0.0
    for word in words:
        start, end = word.start_s, word.end_s
        moved = False
        for a, b in quiet:
            if b <= previous_end or b < start - options.reach_s:
                continue
            if a >= min(start + options.reach_s, end):
                break
            if b <= end - MIN_WORD_S:
                start, moved = max(b, previous_end), True
                break
        if not moved:
            pauses = [b for a, b in quiet if a > start and b <= end - MIN_WORD_S and b - a >= options.pause_s]
            if pauses:
                start = pauses[-1]
        for a, b in reversed(quiet):
            if a >= end + options.reach_s:
                continue
            if b <= max(end - options.reach_s, start):
                break
            if a >= start + MIN_WORD_S:
                end = a
                break
        start = max(start, previous_end)
        end = max(end, start)
        out.append(replace(word, start_s=start, end_s=end))
        previous_end = end
    return out


def shift_words(words: Sequence[Word] | None, offset: float, *, lo: float = 0.0,
                hi: float | None = None) -> list[Word]:
    """`words` moved by `offset` seconds and clamped to [lo, hi]."""
    out = []
    for w in words or []:
        start = max(lo, w.start_s + offset)
        end = max(start, w.end_s + offset)
        if hi is not None:
            start, end = min(start, hi), min(end, hi)
        out.append(replace(w, start_s=start, end_s=end))
    return out

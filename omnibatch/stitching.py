"""Join per-chunk generations into one transcript with time-stamped segments.

Pure functions. Chunks that overlap (forced cuts inside continuous speech, see
`chunking`) both heard the words in the overlap, so the seam is resolved by
aligning the last words of chunk k with the first words of chunk k+1 and
keeping each word once. Engines without timestamps give one segment per chunk;
engines with them (whisper) have their chunk-relative times shifted onto the
file's timeline (through the pieces of a packed chunk: `chunking.TimeMap`). Words with
times (whisper's, or an aligner's for Qwen
transcripts) ride along with their segments: shifted the same way, and a word
the seam removes from the text is removed from the words too, so every word
left is said once, at its time in the file.

The file's language is voted from the chunks' detected languages (each counts
with its duration), and the file's mean token log-probability is the
token-weighted mean of its chunks'.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from omnibatch.packing import TimeMap
from omnibatch.records import Chunk, Generation, Segment, Word

# Scripts written without spaces between words: each character is a token, and
# pieces are joined without a space next to them. (Hangul uses spaces: not here.)
_NO_SPACE_RANGES = (
    (0x3000, 0x303F),  # CJK symbols and punctuation
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x3400, 0x4DBF),  # CJK Extension A
    (0x4E00, 0x9FFF),  # CJK Unified Ideographs
    (0xF900, 0xFAFF),  # CJK Compatibility Ideographs
    (0xFF00, 0xFFEF),  # Halfwidth and fullwidth forms
    (0x20000, 0x2FA1F),  # CJK Extensions B.., compatibility supplement
)
_CJK_CLASS = "".join(f"{re.escape(chr(lo))}-{re.escape(chr(hi))}" for lo, hi in _NO_SPACE_RANGES)
# A token is one no-space-script character, or a run of anything else up to whitespace.
_TOKEN = re.compile(f"[{_CJK_CLASS}]|[^\\s{_CJK_CLASS}]+")
# Punctuation that attaches to the word before it: no space in front when joining.
_CLOSING = set(".,;:!?%)]}»”’…")


def is_no_space_char(ch: str) -> bool:
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _NO_SPACE_RANGES)


def split_words(text: str) -> list[str]:
    """Words of `text`: whitespace-separated runs, with each CJK character a word of its own."""
    return _TOKEN.findall(text)


def word_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) character offsets of the words `split_words` finds."""
    return [m.span() for m in _TOKEN.finditer(text)]


def join_texts(pieces: Sequence[str]) -> str:
    """Join text pieces in order: one space between words, none next to CJK or before closing punctuation."""
    out = ""
    for piece in pieces:
        piece = " ".join(piece.split())
        if not piece:
            continue
        if out and not (is_no_space_char(out[-1]) or is_no_space_char(piece[0]) or piece[0] in _CLOSING):
            out += " "
        out += piece
    return out


@dataclass
class Stitched:
    """A whole file's transcript: `segments` are in file time, sorted, inside [0, duration]."""

    text: str
    segments: list[Segment]
    errors: list[str] = field(default_factory=list)  # "chunk-id: message" for chunks that failed
    language: str | None = None  # voted from the chunks' detected languages; None: none detected
    language_probability: float | None = None
    avg_logprob: float | None = None  # token-weighted mean of the chunks' mean log-probabilities


@dataclass
class _Token:
    segment: int  # index into the chunk's segment list
    start: int  # character span in that segment's text
    end: int
    key: str  # normalized form, for comparison


def stitch(
    chunks: Sequence[Chunk],
    generations: Sequence[Generation],
    *,
    duration_s: float | None = None,
) -> Stitched:
    """One transcript from the generations of `chunks` (same order, one each).

    A failed generation (error set) contributes no text and is listed in
    `errors`; the seam around it is not aligned. `duration_s` bounds the
    segments; None means the end of the last chunk.
    """
    if len(chunks) != len(generations):
        raise ValueError(
            f"stitch needs one generation per chunk, got {len(chunks)} chunks, {len(generations)} generations"
        )
    order = sorted(range(len(chunks)), key=lambda k: (chunks[k].start_s, chunks[k].index))
    chunks = [chunks[k] for k in order]
    generations = [generations[k] for k in order]
    end_of_file = duration_s if duration_s is not None else max((c.end_s for c in chunks), default=0.0)

    errors: list[str] = []
    pieces: list[list[Segment]] = []  # per chunk, its segments in file time
    tokens: list[list[_Token]] = []
    for chunk, gen in zip(chunks, generations):
        if gen.error is not None:
            errors.append(f"{chunk.id}: {gen.error}")
            pieces.append([])
        else:
            pieces.append(_chunk_segments(chunk, gen))
        tokens.append(_tokenize(pieces[-1]))

    # keep[k] = (first, last) token indices of chunk k that survive the seams.
    keep = [[0, len(t)] for t in tokens]
    for k in range(len(chunks) - 1):
        a, b = chunks[k], chunks[k + 1]
        overlap = a.end_s - b.start_s
        if overlap <= 0 or not pieces[k] or not pieces[k + 1]:
            continue
        cut_a, cut_b = _align_seam(tokens[k], tokens[k + 1], overlap, a.duration_s, b.duration_s, keep[k][0])
        keep[k][1] = min(keep[k][1], cut_a)
        keep[k + 1][0] = max(keep[k + 1][0], cut_b)
        # Times in the shared stretch are split at its middle.
        seam = (a.end_s + b.start_s) / 2
        pieces[k] = [_bounded(s, hi=seam) for s in pieces[k]]
        pieces[k + 1] = [_bounded(s, lo=seam) for s in pieces[k + 1]]

    segments: list[Segment] = []
    for segs, toks, (first, last) in zip(pieces, tokens, keep):
        segments.extend(_trim(segs, toks, first, last))
    segments = [_clip(s, end_of_file) for s in segments]
    segments.sort(key=lambda s: (s.start_s, s.end_s))
    language, probability = vote_language(chunks, generations)
    return Stitched(text=join_texts([s.text for s in segments]), segments=segments, errors=errors,
                    language=language, language_probability=probability,
                    avg_logprob=mean_logprob(generations))


def vote_language(chunks: Sequence[Chunk],
                  generations: Sequence[Generation]) -> tuple[str | None, float | None]:
    """The language most of the file's detected speech is in, and its duration-weighted mean probability.

    Only chunks whose language was detected (a probability given) vote, each with its duration.
    """
    weight: dict[str, float] = {}
    weighted_prob: dict[str, float] = {}
    for chunk, gen in zip(chunks, generations):
        if gen.error is not None or gen.language is None or gen.language_probability is None:
            continue
        w = max(chunk.duration_s, 1e-3)
        weight[gen.language] = weight.get(gen.language, 0.0) + w
        weighted_prob[gen.language] = weighted_prob.get(gen.language, 0.0) + w * gen.language_probability
    if not weight:
        return None, None
    best = max(weight, key=lambda code: (weight[code], code))
    return best, round(weighted_prob[best] / weight[best], 4)


def mean_logprob(generations: Sequence[Generation]) -> float | None:
    """Token-weighted mean of the generations' mean log-probabilities (None: none gives one)."""
    known = [(g.avg_logprob, max(g.output_tokens, 1)) for g in generations
             if g.error is None and g.avg_logprob is not None]
    total = sum(n for _, n in known)
    return round(sum(lp * n for lp, n in known) / total, 4) if total else None


def _chunk_segments(chunk: Chunk, gen: Generation) -> list[Segment]:
    """A generation's segments in file time, clipped to its chunk.

    An engine without timestamps gives one segment spanning the chunk.
    """
    if gen.segments:
        to_file = TimeMap.for_chunk(chunk).to_file
        out = []
        for s in gen.segments:
            text = " ".join(s.text.split())
            if text:
                start = to_file(s.start_s)
                words = None
                if s.words is not None:
                    words = []
                    for w in s.words:
                        w_start = to_file(w.start_s)
                        words.append(replace(w, start_s=w_start,
                                             end_s=max(to_file(w.end_s, end=True), w_start)))
                out.append(Segment(start, max(to_file(s.end_s, end=True), start), text, words=words,
                                   avg_logprob=s.avg_logprob, no_speech_prob=s.no_speech_prob))
        return out
    text = " ".join(gen.text.split())
    return [Segment(chunk.start_s, chunk.end_s, text, avg_logprob=gen.avg_logprob)] if text else []


def _bounded(seg: Segment, lo: float | None = None, hi: float | None = None) -> Segment:
    """`seg` (and its words) with times kept at or after `lo` and at or before `hi`."""

    def at(t: float) -> float:
        if lo is not None:
            t = max(t, lo)
        if hi is not None:
            t = min(t, hi)
        return t

    words = None if seg.words is None else [replace(w, start_s=at(w.start_s), end_s=at(w.end_s))
                                             for w in seg.words]
    return replace(seg, start_s=at(seg.start_s), end_s=at(seg.end_s), words=words)


def _normalize(word: str) -> str:
    """Case- and punctuation-blind form of a word, so "Forest." matches "forest"."""
    word = unicodedata.normalize("NFKC", word).casefold()
    kept = "".join(ch for ch in word if not unicodedata.category(ch).startswith("P"))
    return kept or word


def _tokenize(segments: list[Segment]) -> list[_Token]:
    return [
        _Token(i, m.start(), m.end(), _normalize(m.group()))
        for i, seg in enumerate(segments)
        for m in _TOKEN.finditer(seg.text)
    ]


def _align_seam(
    left: list[_Token], right: list[_Token], overlap_s: float, left_s: float, right_s: float, left_floor: int
) -> tuple[int, int]:
    """Where to cut the two token lists so the words of the shared stretch appear once.

    Searches the tail of `left` and the head of `right` (the tokens the shared
    stretch could hold, at each chunk's own speaking rate, with a generous margin)
    for the best run of equal words, and cuts both in the middle of that run, so
    each side keeps the words it heard with more context. The word at a chunk's
    very edge may be cut short ("jum" for "jumps"), so the last word of `left`
    matches a word it begins, and the first word of `right` one it ends. Runs are
    scored by length, less half a point for each word they leave dropped between
    the run and the seam: a true overlap sits at the seam, a chance repeat of a
    phrase ("of the") further in. Without a run of two words or more (or one that
    is all of a side), nothing is removed: a doubled word is a smaller loss than
    a dropped one.
    """
    span_l = _window(len(left), overlap_s, left_s)
    span_r = _window(len(right), overlap_s, right_s)
    lo = max(left_floor, len(left) - span_l)
    tail = [t.key for t in left[lo:]]
    head = [t.key for t in right[:span_r]]
    if not tail or not head:
        return len(left), 0
    # The edge fragments only count when they are the chunks' real edges.
    left_edge = len(tail) - 1
    right_edge = 0

    def same(i: int, j: int) -> bool:
        a, b = tail[i], head[j]
        return a == b or (i == left_edge and b.startswith(a)) or (j == right_edge and a.endswith(b))

    # A single shared word is chance, unless it is all one side heard, right at the seam.
    one_word_side = len(left) - left_floor == 1 or len(right) == 1
    best: tuple[float, int, int, int] | None = None  # (score, length, end in tail, end in head)
    prev = [0] * (len(head) + 1)
    for i in range(1, len(tail) + 1):
        cur = [0] * (len(head) + 1)
        for j in range(1, len(head) + 1):
            if not same(i - 1, j - 1):
                continue
            n = cur[j] = prev[j - 1] + 1
            if n < 2 and not (i == len(tail) and j == 1 and one_word_side):
                continue
            score = n - 0.5 * ((len(tail) - i) + (j - n))
            if score >= 1 and (best is None or (score, n) > best[:2]):
                best = (score, n, i, j)
        prev = cur
    if best is None:
        return len(left), 0
    _, n, i, j = best
    half = (n + 1) // 2
    return lo + i - n + half, j - n + half


def _window(n_tokens: int, overlap_s: float, chunk_s: float) -> int:
    if chunk_s <= 0:
        return n_tokens
    expected = n_tokens * overlap_s / chunk_s
    return min(n_tokens, math.ceil(2 * expected) + 4)


def _trim(segments: list[Segment], tokens: list[_Token], first: int, last: int) -> list[Segment]:
    """The segments with only tokens [first, last) kept; segments left empty are dropped.

    A segment's words go with its tokens: when it has one word per token (whisper's
    words are the text's whitespace-separated runs) the kept tokens' words are kept;
    otherwise the words kept are those at the same share of the segment.
    """
    if first == 0 and last == len(tokens):
        return list(segments)
    spans: dict[int, tuple[int, int]] = {}
    kept: dict[int, list[int]] = {}  # segment -> its kept token numbers, counted inside the segment
    place: dict[int, int] = {}
    for n, tok in enumerate(tokens):
        local = place[tok.segment] = place.get(tok.segment, -1) + 1
        if first <= n < last:
            a, b = spans.get(tok.segment, (tok.start, tok.end))
            spans[tok.segment] = (min(a, tok.start), max(b, tok.end))
            kept.setdefault(tok.segment, []).append(local)
    out = []
    for i, seg in enumerate(segments):
        if i not in spans:
            continue
        words = seg.words
        if words:
            count = place.get(i, -1) + 1
            keep = set(kept[i])
            words = [w for j, w in enumerate(words) if (j if len(words) == count else j * count // len(words))
                     in keep]
        out.append(replace(seg, text=seg.text[spans[i][0] : spans[i][1]], words=words))
    return out


def _clip(seg: Segment, end_of_file: float) -> Segment:
    def at(t: float, floor: float = 0.0) -> float:
        return round(float(min(max(t, floor), end_of_file)), 3)

    start = at(seg.start_s)
    words = None
    if seg.words is not None:
        words = []
        for w in seg.words:
            w_start = at(w.start_s)
            words.append(Word(w_start, at(w.end_s, w_start), w.text, w.probability))
    return replace(seg, start_s=start, end_s=at(seg.end_s, start), words=words)

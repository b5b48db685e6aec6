"""Plan the chunks of a long file: pure arithmetic on speech regions, no audio.

A recognizer sees one chunk at a time, so where the cuts fall decides whether
words survive. The plan cuts in pauses (never inside speech when a pause is
within reach), drops stretches of silence, and only when continuous speech runs
past the limit makes a forced cut with an overlap that `stitching` resolves.
Times are seconds on the file's timeline.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from omnibatch.records import Chunk

Region = tuple[float, float]


@dataclass(frozen=True)
class ChunkingOptions:
    """How to cut a file into chunks.

    max_chunk_s: no chunk is longer. About 30 s suits Qwen3-Omni (and Whisper's window).
    min_chunk_s: a shorter chunk is widened into the silence around it, when there is room.
    min_silence_s: a gap between speech regions shorter than this is not a pause (it may be
        a stop consonant), so it is treated as speech.
    max_silence_s: a pause longer than this always ends a chunk, so no chunk carries long silence.
    overlap_s: how much two chunks share at a forced cut inside continuous speech.
    pad_s: silence kept on each side of speech, so a chunk never starts or ends on a word edge.
    """

    max_chunk_s: float = 30.0
    min_chunk_s: float = 1.0
    min_silence_s: float = 0.1
    max_silence_s: float = 3.0
    overlap_s: float = 1.5
    pad_s: float = 0.2

    def __post_init__(self) -> None:
        if not self.max_chunk_s > 0:
            raise ValueError(f"max_chunk_s must be positive, got {self.max_chunk_s}")
        if not 0 <= self.overlap_s < self.max_chunk_s / 2:
            raise ValueError(
                f"overlap_s must be in [0, max_chunk_s/2), got {self.overlap_s} for max {self.max_chunk_s}"
            )
        if not 0 <= self.pad_s < self.max_chunk_s / 4:
            raise ValueError(f"pad_s must be in [0, max_chunk_s/4), got {self.pad_s}")
        if not 0 <= self.min_chunk_s <= self.max_chunk_s:
            raise ValueError(f"min_chunk_s must be in [0, max_chunk_s], got {self.min_chunk_s}")
        if self.min_silence_s < 0 or self.max_silence_s < self.min_silence_s:
            raise ValueError("need 0 <= min_silence_s <= max_silence_s")


@dataclass(frozen=True)
class TimeMap:
    """Maps a time inside a chunk's audio to the file's timeline.

    The chunk's audio is the file's [start_s, end_s) with nothing removed, so the
    map is an offset; times outside the chunk are clamped to it, since an engine
    may report a timestamp slightly past the audio it was given.
    """

    start_s: float
    end_s: float

    @classmethod
    def for_chunk(cls, chunk: Chunk) -> TimeMap:
        return cls(chunk.start_s, chunk.end_s)

    def to_file(self, t: float) -> float:
        return min(max(self.start_s + t, self.start_s), self.end_s)


def normalize_regions(
    regions: Sequence[Region], duration_s: float, min_silence_s: float = 0.0
) -> list[Region]:
    """Sort, clip to [0, duration] and merge regions closer than `min_silence_s`."""
    clipped = sorted((max(0.0, float(a)), min(float(duration_s), float(b))) for a, b in regions)
    merged: list[list[float]] = []
    for a, b in clipped:
        if b <= a:
            continue
        if merged and a - merged[-1][1] < min_silence_s:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return [(a, b) for a, b in merged]


def plan_chunks(
    speech: Sequence[Region],
    duration_s: float,
    options: ChunkingOptions | None = None,
    *,
    item_id: str = "",
) -> list[Chunk]:
    """Plan chunks that cover all speech in `speech` (VAD regions), in order.

    Every chunk is at most `options.max_chunk_s` long. Consecutive chunks do not
    overlap, except after a forced cut inside continuous speech, where they share
    about `options.overlap_s`. Silence longer than `2 * pad_s` between chunks is
    left out. No speech means no chunks.
    """
    opt = options or ChunkingOptions()
    regions = normalize_regions(speech, duration_s, opt.min_silence_s)
    if not regions:
        return []
    spans = _plan_spans(regions, float(duration_s), opt)
    spans = _widen_short(spans, float(duration_s), opt.min_chunk_s)
    return _to_chunks(spans, item_id)


def plan_fixed_chunks(
    duration_s: float,
    max_chunk_s: float = 30.0,
    overlap_s: float = 1.5,
    *,
    item_id: str = "",
) -> list[Chunk]:
    """Cut [0, duration] into equal chunks of at most `max_chunk_s`, overlapping by `overlap_s`.

    For files without VAD information: every cut may fall in speech, so every
    seam overlaps and the stitcher removes what was said twice.
    """
    if not max_chunk_s > 0 or not 0 <= overlap_s < max_chunk_s / 2:
        raise ValueError(
            f"need max_chunk_s > 0 and 0 <= overlap_s < max_chunk_s/2, got {max_chunk_s}, {overlap_s}"
        )
    duration_s = float(duration_s)
    if duration_s <= 0:
        return []
    n = _pieces_needed(duration_s, max_chunk_s, overlap_s)
    # Equal lengths rather than full chunks and a stub: a 0.4 s tail chunk gives a
    # recognizer too little context.
    length = (duration_s + (n - 1) * overlap_s) / n
    step = length - overlap_s
    spans = [(k * step, min(duration_s, k * step + length)) for k in range(n)]
    spans[-1] = (spans[-1][0], duration_s)
    return _to_chunks(spans, item_id)


def _pieces_needed(length: float, max_len: float, overlap: float) -> int:
    """How many pieces of at most `max_len`, overlapping by `overlap`, cover `length`."""
    if length <= max_len:
        return 1
    # Rounding guards against 60.000000001 / 28.5 asking for one piece too many.
    return max(1, math.ceil(round((length - overlap) / (max_len - overlap), 9)))


def _plan_spans(regions: list[Region], duration: float, opt: ChunkingOptions) -> list[Region]:
    max_len, pad = opt.max_chunk_s, opt.pad_s
    n = len(regions)
    # Where a chunk ending after region g ends, and where the next one starts: the
    # pad into the pause, but never past the pause's middle.
    ends: list[float] = []
    starts_after: list[float] = []
    for g in range(n):
        a = regions[g][1]
        if g + 1 < n:
            b = regions[g + 1][0]
            mid = (a + b) / 2
            ends.append(min(a + pad, mid))
            starts_after.append(max(b - pad, mid))
        else:
            ends.append(min(a + pad, duration))
    gaps = [regions[g + 1][0] - regions[g][1] for g in range(n - 1)]

    spans: list[Region] = []
    s = max(0.0, regions[0][0] - pad)
    i = 0  # the first region not yet fully inside a closed chunk
    while i < n:
        # Take whole regions while they fit; stop early at a long pause.
        j = i
        while j < n and ends[j] - s <= max_len + 1e-9:
            if j + 1 < n and gaps[j] > opt.max_silence_s:
                j += 1
                break
            j += 1
        if j == n or (j > i and gaps[j - 1] > opt.max_silence_s):
            # Everything up to region j-1 fits, and it ends at the file's end or a long pause.
            spans.append((s, ends[j - 1]))
            if j < n:
                s = starts_after[j - 1]
            i = j
            continue
        if j > i:
            # Region j does not fit: cut in the best pause among those within reach.
            g = _choose_pause(range(i, j), s, ends, gaps, max_len)
            spans.append((s, ends[g]))
            s = starts_after[g]
            i = g + 1
            continue
        # Region i alone runs past the limit from s: continuous speech, forced cut.
        # Cut it into equal pieces so that the last one is not a stub.
        remaining = ends[i] - s
        pieces = _pieces_needed(remaining, max_len, opt.overlap_s)
        length = min(max_len, (remaining + (pieces - 1) * opt.overlap_s) / pieces)
        spans.append((s, s + length))
        s = s + length - opt.overlap_s
    return spans


def _choose_pause(candidates: range, s: float, ends: list[float], gaps: list[float], max_len: float) -> int:
    """The region after which to cut: the longest pause, preferring the back half.

    A pause in the back half keeps chunks long (more context, fewer seams); the
    longest pause is the safest place to cut. Ties go to the later pause.
    """
    back = [g for g in candidates if ends[g] - s >= max_len / 2]
    pool = back or list(candidates)
    return max(pool, key=lambda g: (gaps[g], g))


def _widen_short(spans: list[Region], duration: float, min_len: float) -> list[Region]:
    """Widen chunks shorter than `min_len` into the silence on either side, without overlapping."""
    out = list(spans)
    for k, (a, b) in enumerate(out):
        need = min_len - (b - a)
        if need <= 0:
            continue
        lo = out[k - 1][1] if k > 0 else 0.0
        hi = out[k + 1][0] if k + 1 < len(out) else duration
        lo, hi = min(lo, a), max(hi, b)
        left = min(need / 2, a - lo)
        right = min(need - left, hi - b)
        left = min(need - right, a - lo)
        out[k] = (a - left, b + right)
    return out


def _to_chunks(spans: list[Region], item_id: str) -> list[Chunk]:
    return [
        Chunk(item_id=item_id, index=k, start_s=float(a), end_s=float(b)) for k, (a, b) in enumerate(spans)
    ]

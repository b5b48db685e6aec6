"""Plan the chunks of a long file: pure arithmetic on speech regions, no audio.

A recognizer sees one chunk at a time, so where the cuts fall decides whether
words survive. The plan cuts in pauses (never inside speech when a pause is
within reach), drops stretches of silence, and only when continuous speech runs
past the limit makes a forced cut with an overlap that `stitching` resolves.
Times are seconds on the file's timeline.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
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
    spans: list[Region] = []
    s: float | None = max(0.0, regions[0][0] - opt.pad_s)
    i = 0  # the first region not yet fully inside a closed chunk
    while s is not None:
        step = _next_span(regions, s, i, duration, opt)
        spans.append(step.span)
        s, i = step.next_s, step.next_i
    return spans


@dataclass(frozen=True)
class _Step:
    """One chunk planned from `s`, and where planning goes on.

    next_s None: the next chunk starts at the region after `regions` (none offline;
    online, one not in view yet), in the pause after regions[next_i - 1].
    """

    span: Region
    next_s: float | None
    next_i: int


class _Cuts:
    """Where a chunk ending after region g ends, and where the next one starts: the pad into
    the pause, but never past the pause's middle. Computed on demand, so a step costs only
    the regions it looks at."""

    __slots__ = ("regions", "duration", "pad")

    def __init__(self, regions: Sequence[Region], duration: float, pad: float) -> None:
        self.regions, self.duration, self.pad = regions, duration, pad

    def end(self, g: int) -> float:
        a = self.regions[g][1]
        if g + 1 < len(self.regions):
            return min(a + self.pad, (a + self.regions[g + 1][0]) / 2)
        return min(a + self.pad, self.duration)

    def start_after(self, g: int) -> float:
        a, b = self.regions[g][1], self.regions[g + 1][0]
        return max(b - self.pad, (a + b) / 2)

    def gap(self, g: int) -> float:
        return self.regions[g + 1][0] - self.regions[g][1]


def _next_span(
    regions: Sequence[Region],
    s: float,
    i: int,
    duration: float,
    opt: ChunkingOptions,
    *,
    open_end: bool = False,
) -> _Step:
    """The chunk that starts at `s`, where regions[i] is the first region not yet fully inside one.

    `open_end`: the last region goes on past what `regions` says (online: its end is not in
    view). It never fits, and a forced cut through it is a full-length piece.
    """
    max_len = opt.max_chunk_s
    cuts = _Cuts(regions, duration, opt.pad_s)
    n = len(regions)

    def fits(g: int) -> bool:
        return not (open_end and g == n - 1) and cuts.end(g) - s <= max_len + 1e-9

    # Take whole regions while they fit; stop early at a long pause.
    j = i
    while j < n and fits(j):
        if j + 1 < n and cuts.gap(j) > opt.max_silence_s:
            j += 1
            break
        j += 1
    if j == n or (j > i and cuts.gap(j - 1) > opt.max_silence_s):
        # Everything up to region j-1 fits, and it ends at the last region or a long pause.
        return _Step((s, cuts.end(j - 1)), cuts.start_after(j - 1) if j < n else None, j)
    if j > i:
        # Region j does not fit: cut in the best pause among those within reach.
        g = _choose_pause(range(i, j), s, cuts, max_len)
        return _Step((s, cuts.end(g)), cuts.start_after(g), g + 1)
    # Region i alone runs past the limit from s: continuous speech, forced cut.
    if open_end and i == n - 1:
        # Its end is not known yet: a full piece now, equal pieces once the end is in view.
        length = max_len
    else:
        # Cut it into equal pieces so that the last one is not a stub.
        remaining = cuts.end(i) - s
        pieces = _pieces_needed(remaining, max_len, opt.overlap_s)
        length = min(max_len, (remaining + (pieces - 1) * opt.overlap_s) / pieces)
    return _Step((s, s + length), s + length - opt.overlap_s, i)


def _choose_pause(candidates: range, s: float, cuts: _Cuts, max_len: float) -> int:
    """The region after which to cut: the longest pause, preferring the back half.

    A pause in the back half keeps chunks long (more context, fewer seams); the
    longest pause is the safest place to cut. Ties go to the later pause.
    """
    back = [g for g in candidates if cuts.end(g) - s >= max_len / 2]
    pool = back or list(candidates)
    return max(pool, key=lambda g: (cuts.gap(g), g))


def _widen_short(spans: list[Region], duration: float, min_len: float) -> list[Region]:
    """Widen chunks shorter than `min_len` into the silence on either side, without overlapping."""
    out = list(spans)
    for k, (a, b) in enumerate(out):
        lo = out[k - 1][1] if k > 0 else 0.0
        hi = out[k + 1][0] if k + 1 < len(out) else duration
        out[k] = _widen(a, b, lo, hi, min_len)
    return out


def _widen(a: float, b: float, lo: float, hi: float, min_len: float) -> Region:
    """[a, b] widened to `min_len` within [lo, hi] (the neighbours' edges), half on each side
    where there is room."""
    need = min_len - (b - a)
    if need <= 0:
        return (a, b)
    lo, hi = min(lo, a), max(hi, b)
    left = min(need / 2, a - lo)
    right = min(need - left, hi - b)
    left = min(need - right, a - lo)
    return (a - left, b + right)


def _widen_before_known(a: float, b: float, lo: float, hi_at_least: float, min_len: float) -> Region | None:
    """`_widen` when only a lower bound of `hi` is known: the result, if that bound already
    leaves all the room the right side can take, else None (wait for the next chunk)."""
    need = min_len - (b - a)
    if need <= 0:
        return (a, b)
    left = min(need / 2, a - min(lo, a))
    if max(hi_at_least, b) - b < need - left:
        return None
    return _widen(a, b, lo, hi_at_least, min_len)


def _to_chunks(spans: list[Region], item_id: str) -> list[Chunk]:
    return [
        Chunk(item_id=item_id, index=k, start_s=float(a), end_s=float(b)) for k, (a, b) in enumerate(spans)
    ]


_EPS = 1e-6  # keeps margins strict against float rounding


class OnlinePlanner:
    """What the online planners share: speech regions in as the VAD closes them, final pieces out.

    `update` takes the newly closed regions, the start of the region still open (or None)
    and the VAD's settled frontier; `finish` the last regions. Both return the pieces
    (chunks or clips) that nothing later can change. Subclasses say what is final
    (`_advance`).
    """

    def __init__(self, duration_s: float, item_id: str) -> None:
        self.duration_s = float(duration_s)
        self.item_id = item_id
        self._closed: list[Region] = []  # regions not yet fully inside a returned piece
        self._open: float | None = None
        self._frontier = 0.0
        self._finished = False
        self._count = 0  # pieces returned

    def update(self, regions: Iterable[Region], open_start_s: float | None, frontier_s: float) -> list[Chunk]:
        """Add newly closed `regions` (in order); return the pieces that are now final."""
        if self._finished:
            raise RuntimeError(f"{type(self).__name__}.update after finish")
        self._add(regions)
        self._open = open_start_s
        self._frontier = max(self._frontier, float(frontier_s))
        return self._advance()

    def finish(self, regions: Iterable[Region] = ()) -> list[Chunk]:
        """The last closed `regions` (the VAD's own finish); return every piece still to come."""
        if self._finished:
            return []
        self._add(regions)
        self._open, self._frontier, self._finished = None, math.inf, True
        return self._advance()

    def _add(self, regions: Iterable[Region]) -> None:
        self._closed += [(float(a), float(b)) for a, b in regions]

    def _advance(self) -> list[Chunk]:
        raise NotImplementedError


class OnlineChunker(OnlinePlanner):
    """`plan_chunks` while the file is still being decoded, with a bounded look-ahead.

    Told the speech regions as the VAD closes them, the start of the one still open and
    the VAD's settled frontier (`SpeechDetector.settled_s`: speech before it is final),
    it returns each chunk as soon as nothing later can change it: the chunk starting at
    s is planned once speech up to s + `lookahead_s` is known, from what lies before
    that point only. Where every stretch of continuous speech fits in the look-ahead the
    chunks are exactly `plan_chunks(all regions, duration_s)`. A longer monologue is
    cut into full `max_chunk_s` pieces while its end is out of view, and into equal
    pieces (as `plan_chunks` cuts all of it) once it is in view. The result depends only
    on the regions, never on how they are fed.

    lookahead_s: None means twice `max_chunk_s` (so speech up to about two chunks long is
        cut exactly), and never less than `max_chunk_s` plus the longest pause that still
        joins chunks, which is what deciding a cut in a pause needs.
    """

    def __init__(
        self,
        options: ChunkingOptions | None,
        duration_s: float,
        item_id: str = "",
        *,
        lookahead_s: float | None = None,
    ) -> None:
        super().__init__(duration_s, item_id)
        self.options = opt = options or ChunkingOptions()
        # A region's end is final (and its pads known) once the frontier is this far past it.
        self._end_margin = max(2 * opt.pad_s, opt.min_silence_s) + _EPS
        least = opt.max_chunk_s + max(opt.max_silence_s, 2 * opt.pad_s, opt.min_silence_s) + 2 * _EPS
        if lookahead_s is None:
            lookahead_s = max(2 * opt.max_chunk_s, least)
        elif not lookahead_s >= least:
            raise ValueError(
                f"lookahead_s must be at least max_chunk_s plus max_silence_s (and 2 * pad_s), "
                f"{least:.3f} s here; got {lookahead_s}"
            )
        self.lookahead_s = float(lookahead_s)
        self._s: float | None = None  # where the next chunk starts; None until its region is known
        self._after: float | None = None  # end of the region the last chunk ended after
        self._spans: list[Region] = []  # planned, not yet widened
        self._last_end = 0.0  # end of the last chunk returned, as widened (0 bounds the first)

    @property
    def needed_from_s(self) -> float:
        """No chunk still to come starts before this (inf when none will): audio before it may go."""
        starts = [self._spans[0][0]] if self._spans else []
        if self._s is not None:
            starts.append(self._s)
        elif not self._finished:
            starts.append(self._frontier - self.options.pad_s)  # the next region starts past the frontier
        if not starts:
            return math.inf
        return max(0.0, min(starts) - self.options.min_chunk_s)  # widening reaches back at most this

    def _add(self, regions: Iterable[Region]) -> None:
        for a, b in regions:
            if a < self.duration_s:
                self._closed.append((float(a), float(b)))

    def _known(self) -> list[Region]:
        """The regions not yet used up, the open one as far as it is known, normalized."""
        known = list(self._closed)
        if self._open is not None and self._open < self._frontier:
            known.append((self._open, self._frontier))
        return normalize_regions(known, self.duration_s, self.options.min_silence_s)

    def _advance(self) -> list[Chunk]:
        opt = self.options
        while True:
            if self._s is None:
                known = self._known()
                if not known:
                    break  # wait for the next region (after finish: there is none)
                b = known[0][0]
                if self._after is None:
                    self._s = max(0.0, b - opt.pad_s)
                else:
                    self._s = max(b - opt.pad_s, (self._after + b) / 2)  # as `_Cuts.start_after`
            horizon = self._s + self.lookahead_s
            if self._frontier < horizon:
                break
            # Only what lies before the horizon decides, so the plan does not depend on block sizes.
            view = [r for r in self._known() if r[0] < horizon]
            open_end = horizon < self.duration_s and view[-1][1] > horizon - self._end_margin
            step = _next_span(view, self._s, 0, self.duration_s, opt, open_end=open_end)
            self._spans.append(step.span)
            if step.next_i:
                used = view[step.next_i - 1][1]
                self._closed = [r for r in self._closed if r[1] > used]
                self._after = used
            self._s = step.next_s
        return self._emit()

    def _emit(self) -> list[Chunk]:
        """Widen and return the planned spans whose next neighbour's start is known, or known
        to leave all the room a short chunk may take."""
        out: list[Chunk] = []
        min_len = self.options.min_chunk_s
        while self._spans:
            a, b = self._spans[0]
            hi = self._next_start()
            if hi is not None:
                span: Region | None = _widen(a, b, self._last_end, hi, min_len)
            else:
                span = _widen_before_known(a, b, self._last_end, self._next_start_at_least(), min_len)
                if span is None:
                    break
            self._spans.pop(0)
            out.append(Chunk(self.item_id, self._count, float(span[0]), float(span[1])))
            self._last_end = span[1]
            self._count += 1
        return out

    def _next_start(self) -> float | None:
        """Where the chunk after the first planned span starts, when that is known."""
        if len(self._spans) > 1:
            return self._spans[1][0]
        if self._s is not None:
            return self._s
        return self.duration_s if self._finished else None

    def _next_start_at_least(self) -> float:
        """A bound on the next chunk's start while its region is not seen yet: that region starts
        past the frontier, and the chunk in the pause before it (or the file ends first)."""
        at, pad = self._frontier, self.options.pad_s
        if self._after is None:
            return at - pad
        return min(self.duration_s, max(at - pad, (self._after + at) / 2))

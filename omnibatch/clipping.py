"""Cut a file into clips for captioning, and group clip captions for the whole-file pass: pure arithmetic.

Unlike `chunking` (which keeps speech and drops silence, for a recognizer), clips
cover the whole file with no gaps and no overlap: a caption describes the
picture and every sound, and silence is part of that. Clips are about equal and
never longer than `clip_s`; where there is speech, each cut moves, within
reach of its even position, into a pause, so no clip starts or ends mid-word.
Times are seconds on the file's timeline.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from omnibatch.chunking import OnlinePlanner, Region, normalize_regions
from omnibatch.records import Chunk


@dataclass(frozen=True)
class ClipOptions:
    """How to cut a file into clips.

    clip_s: no clip is longer.
    reach: how far (a fraction of clip_s) a cut may move from its even position to land in a pause.
    min_pause_s: a shorter gap between speech regions is a pause between words, not a safe cut,
        unless nothing better is within reach.
    pad_s: a cut stays this far from speech when the pause is wide enough (else it takes the middle).
    """

    clip_s: float = 30.0
    reach: float = 0.25
    min_pause_s: float = 0.3
    pad_s: float = 0.2

    def __post_init__(self) -> None:
        if not (self.clip_s > 0 and math.isfinite(self.clip_s)):
            raise ValueError(f"clip_s must be a positive number of seconds, got {self.clip_s}")
        if not 0 <= self.reach <= 0.25:
            raise ValueError(f"reach must be in [0, 0.25], got {self.reach}")
        if self.min_pause_s < 0 or self.pad_s < 0:
            raise ValueError("min_pause_s and pad_s must be >= 0")


def plan_clips(
    duration_s: float,
    speech: Sequence[Region] = (),
    options: ClipOptions | None = None,
    *,
    item_id: str = "",
) -> list[Chunk]:
    """Clips that tile [0, duration_s] in order, each at most `options.clip_s` long.

    Without speech regions the clips are equal. With them, each cut is moved to the
    pause nearest its even position (within `reach * clip_s`); continuous speech
    longer than that gets a forced cut at the even position. No clip is shorter
    than a quarter of `clip_s`, except the only clip of a short file.
    """
    opt = options or ClipOptions()
    duration = float(duration_s)
    if not duration > 0:
        return []
    pauses = pauses_between(normalize_regions(speech, duration), duration)
    spans: list[Region] = []
    start = 0.0
    while (window := cut_window(start, duration, opt)) is not None:
        cut = choose_cut(pauses, window.lo, window.hi, window.target, opt)
        spans.append((start, cut))
        start = cut
    spans.append((start, duration))
    return [Chunk(item_id=item_id, index=k, start_s=a, end_s=b) for k, (a, b) in enumerate(spans)]


@dataclass(frozen=True)
class CutWindow:
    """Where the cut ending the clip that starts at some `start` may fall: [lo, hi], best at `target`."""

    lo: float
    hi: float
    target: float


def cut_window(start: float, duration: float, opt: ClipOptions) -> CutWindow | None:
    """The window for the cut after `start`; None when the rest of the file is one clip."""
    pieces = pieces_needed(duration - start, opt.clip_s)
    if pieces <= 1:
        return None
    # The even position for the rest of the file; with n >= 2 pieces it is more than
    # clip_s / 2 from `start`, so the window below never reaches back to `start`.
    target = start + (duration - start) / pieces
    reach = opt.reach * opt.clip_s
    return CutWindow(target - reach, min(start + opt.clip_s, target + reach), target)


class OnlineClipper(OnlinePlanner):
    """`plan_clips` while the file's audio is still being decoded.

    The duration is known up front (from ffprobe), so every cut's window is too; a cut is
    chosen once the VAD's settled frontier (`SpeechDetector.settled_s`) has passed its
    window by a margin that fixes the pause straddling the window's end. The clips are
    exactly `plan_clips(duration_s, all regions)`, however the regions are fed.
    """

    def __init__(self, options: ClipOptions | None, duration_s: float, item_id: str = "") -> None:
        super().__init__(duration_s, item_id)
        self.options = opt = options or ClipOptions()
        # Past this margin a pause reaching beyond the window is long, and its far edge out of reach.
        self._margin = max(opt.min_pause_s, 2 * opt.pad_s) + 1e-6
        self._start: float | None = 0.0 if self.duration_s > 0 else None  # None: every clip returned

    @property
    def needed_from_s(self) -> float:
        """No clip still to come starts before this (inf when none will)."""
        return math.inf if self._start is None else self._start

    def _pauses(self) -> list[Region]:
        known = list(self._closed)
        if self._open is not None and self._open < self._frontier:
            known.append((self._open, self._frontier))
        # The last pause may end at the frontier: it goes on, but by the margin that no longer matters.
        return pauses_between(normalize_regions(known, self.duration_s), min(self._frontier, self.duration_s))

    def _advance(self) -> list[Chunk]:
        out: list[Chunk] = []
        while self._start is not None:
            start = self._start
            window = cut_window(start, self.duration_s, self.options)
            if window is None:
                out.append(self._clip(start, self.duration_s))
                self._start = None
                break
            if self._frontier < window.hi + self._margin:
                break
            cut = choose_cut(self._pauses(), window.lo, window.hi, window.target, self.options)
            out.append(self._clip(start, cut))
            self._start = cut
            # Keep the last region before the cut: the pause after it may reach the next window.
            before = [k for k, (_, b) in enumerate(self._closed) if b <= cut]
            if before:
                del self._closed[: before[-1]]
        return out

    def _clip(self, a: float, b: float) -> Chunk:
        self._count += 1
        return Chunk(item_id=self.item_id, index=self._count - 1, start_s=a, end_s=b)


def pieces_needed(length: float, clip_s: float) -> int:
    """How many clips of at most `clip_s` tile `length`."""
    # Rounding keeps 60.000000001 / 30 from asking for a third clip.
    return max(1, math.ceil(round(length / clip_s, 9)))


def pauses_between(regions: Sequence[Region], duration: float) -> list[Region]:
    """The gaps of [0, duration] not covered by the (sorted, disjoint) speech `regions`."""
    gaps: list[Region] = []
    at = 0.0
    for a, b in regions:
        if a > at:
            gaps.append((at, a))
        at = max(at, b)
    if at < duration:
        gaps.append((at, duration))
    return gaps


def choose_cut(pauses: Sequence[Region], lo: float, hi: float, target: float, opt: ClipOptions) -> float:
    """Where in [lo, hi] to cut: in the pause nearest `target`; at `target` if speech fills the window.

    Pauses of at least `min_pause_s` win over shorter ones; among shorter ones the
    longest wins. Within a pause the cut keeps `pad_s` from the speech on either side.
    """
    good: list[float] = []
    short: list[tuple[float, float]] = []  # (pause length, cut)
    for a, b in pauses:
        if b <= lo or a >= hi:
            continue
        edge = min(opt.pad_s, (b - a) / 2)
        first, last = max(a + edge, lo), min(b - edge, hi)
        if first > last:
            continue  # only the pause's edge next to speech is in the window
        cut = min(max(target, first), last)
        if b - a >= opt.min_pause_s:
            good.append(cut)
        else:
            short.append((b - a, cut))
    if good:
        return min(good, key=lambda c: (abs(c - target), c))
    if short:
        return max(short, key=lambda lc: (lc[0], -abs(lc[1] - target)))[1]
    return min(max(target, lo), hi)


def merge_groups(count: int, group_size: int) -> list[range]:
    """Split `count` consecutive items into the fewest contiguous groups of at most `group_size`,
    as equal as can be (the first groups take the remainder)."""
    if group_size < 2:
        raise ValueError(f"group_size must be at least 2, got {group_size}")
    if count <= 0:
        return []
    groups = math.ceil(count / group_size)
    size, extra = divmod(count, groups)
    out: list[range] = []
    at = 0
    for g in range(groups):
        n = size + (1 if g < extra else 0)
        out.append(range(at, at + n))
        at += n
    return out

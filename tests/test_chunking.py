"""Chunk planning: pure arithmetic, checked case by case and over random speech layouts,
offline and online (while the file is still being decoded)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from omnibatch.chunking import (
    ChunkingOptions,
    OnlineChunker,
    normalize_regions,
    plan_chunks,
    plan_fixed_chunks,
)
from omnibatch.clipping import ClipOptions, OnlineClipper, plan_clips
from omnibatch.records import Chunk

EPS = 1e-6


def spans(chunks: list[Chunk]) -> list[tuple[float, float]]:
    return [(round(c.start_s, 6), round(c.end_s, 6)) for c in chunks]


def covered(t0: float, t1: float, chunks: list[Chunk]) -> bool:
    """Is [t0, t1] inside the union of the chunks?"""
    t = t0
    for c in sorted(chunks, key=lambda c: c.start_s):
        if c.start_s <= t + EPS and c.end_s > t:
            t = c.end_s
        if t >= t1 - EPS:
            return True
    return t >= t1 - EPS


def check_plan(
    chunks: list[Chunk], speech: list[tuple[float, float]], duration: float, opt: ChunkingOptions
) -> None:
    """The invariants every plan keeps."""
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        assert 0 <= c.start_s < c.end_s <= duration + EPS
        assert c.duration_s <= opt.max_chunk_s + EPS, c
    for a, b in zip(chunks, chunks[1:]):
        assert a.start_s < b.start_s and a.end_s < b.end_s  # ordered
        overlap = a.end_s - b.start_s
        # Chunks touch at most, except at forced cuts, which share exactly overlap_s.
        assert overlap <= EPS or abs(overlap - opt.overlap_s) < EPS, (a, b)
    for a, b in normalize_regions(speech, duration):
        assert covered(a, b, chunks), f"speech {a}-{b} not covered by {spans(chunks)}"


def test_no_speech_no_chunks():
    assert plan_chunks([], 100.0) == []
    assert plan_chunks([(5.0, 5.0), (200.0, 300.0)], 100.0) == []  # empty, and outside the file


def test_short_file_one_chunk_padded():
    opt = ChunkingOptions(pad_s=0.2)
    chunks = plan_chunks([(1.0, 4.0)], 10.0, opt, item_id="ep")
    assert spans(chunks) == [(0.8, 4.2)]
    assert chunks[0].id == "ep#00000"


def test_pad_clipped_to_file():
    assert spans(plan_chunks([(0.05, 9.95)], 10.0, ChunkingOptions(pad_s=0.2))) == [(0.0, 10.0)]


def test_regions_within_limit_share_a_chunk():
    chunks = plan_chunks([(1, 5), (6, 12), (13, 20)], 30.0, ChunkingOptions(pad_s=0.2))
    assert spans(chunks) == [(0.8, 20.2)]


def test_cut_in_longest_pause_of_back_half():
    # Pauses after 9 s (0.4 s long), 16 s (1.2 s) and 25 s (0.5 s); the 40 s speech cannot fit.
    speech = [(0.0, 9.0), (9.4, 16.0), (17.2, 25.0), (25.5, 40.0)]
    opt = ChunkingOptions(max_chunk_s=30.0, pad_s=0.2)
    chunks = plan_chunks(speech, 60.0, opt)
    check_plan(chunks, speech, 60.0, opt)
    assert chunks[0].end_s == pytest.approx(16.2)  # in the 16.0-17.2 pause, the longest in reach
    assert chunks[1].start_s == pytest.approx(17.0)


def test_short_pause_cut_in_its_middle():
    # A 0.3 s pause is narrower than two pads: both chunks meet in its middle.
    speech = [(0.0, 20.0), (20.3, 45.0)]
    chunks = plan_chunks(speech, 50.0, ChunkingOptions(pad_s=0.2))
    assert chunks[0].end_s == pytest.approx(20.15)
    assert chunks[1].start_s == pytest.approx(20.15)


def test_back_half_preferred_over_a_longer_early_pause():
    speech = [(0.0, 3.0), (6.0, 20.0), (20.5, 28.0), (28.5, 40.0)]
    opt = ChunkingOptions(max_chunk_s=30.0, max_silence_s=10.0, pad_s=0.0)
    chunks = plan_chunks(speech, 40.0, opt)
    # The 3 s pause at 3 s would leave a 3 s chunk; a 0.5 s pause in the back half is
    # used instead (of two equal ones, the later). With no pad the silence is dropped whole.
    assert chunks[0].end_s == pytest.approx(28.0)
    assert chunks[1].start_s == pytest.approx(28.5)
    check_plan(chunks, speech, 40.0, opt)


def test_long_silence_is_dropped():
    speech = [(1.0, 5.0), (60.0, 65.0)]
    opt = ChunkingOptions(pad_s=0.2, max_silence_s=3.0)
    chunks = plan_chunks(speech, 100.0, opt)
    assert spans(chunks) == [(0.8, 5.2), (59.8, 65.2)]


def test_long_silence_ends_a_chunk_even_when_both_would_fit():
    speech = [(0.0, 5.0), (10.0, 15.0)]
    chunks = plan_chunks(speech, 20.0, ChunkingOptions(pad_s=0.0, max_silence_s=3.0))
    assert spans(chunks) == [(0.0, 5.0), (10.0, 15.0)]
    chunks = plan_chunks(speech, 20.0, ChunkingOptions(pad_s=0.0, max_silence_s=6.0))
    assert spans(chunks) == [(0.0, 15.0)]


def test_tiny_gaps_are_not_pauses():
    speech = [(0.0, 10.0), (10.05, 20.0)]
    assert normalize_regions(speech, 30.0, min_silence_s=0.1) == [(0.0, 20.0)]
    assert normalize_regions(speech, 30.0, min_silence_s=0.0) == [(0.0, 10.0), (10.05, 20.0)]


def test_forced_cut_in_continuous_speech_overlaps_and_is_balanced():
    opt = ChunkingOptions(max_chunk_s=30.0, overlap_s=1.5, pad_s=0.0)
    chunks = plan_chunks([(0.0, 100.0)], 100.0, opt)
    check_plan(chunks, [(0.0, 100.0)], 100.0, opt)
    assert len(chunks) == 4  # (100 - 1.5) / 28.5 -> 4 pieces
    lengths = [c.duration_s for c in chunks]
    assert max(lengths) - min(lengths) < 1e-6  # equal pieces, no stub at the end
    assert chunks[-1].end_s == pytest.approx(100.0)


def test_forced_cut_only_where_no_pause_in_reach():
    # 50 s of speech, then a pause, then more: the long stretch is force-cut once,
    # and the chunk after it ends in the pause.
    speech = [(0.0, 50.0), (51.0, 60.0)]
    opt = ChunkingOptions(max_chunk_s=30.0, overlap_s=2.0, pad_s=0.2)
    chunks = plan_chunks(speech, 60.0, opt)
    check_plan(chunks, speech, 60.0, opt)
    overlaps = [a.end_s - b.start_s for a, b in zip(chunks, chunks[1:])]
    assert sum(1 for o in overlaps if o > 0) == 1


def test_speech_exactly_max_long_is_one_chunk():
    opt = ChunkingOptions(max_chunk_s=30.0, pad_s=0.0)
    assert spans(plan_chunks([(10.0, 40.0)], 50.0, opt)) == [(10.0, 40.0)]


def test_min_chunk_widened_into_silence():
    opt = ChunkingOptions(min_chunk_s=1.0, pad_s=0.1, max_silence_s=1.0)
    chunks = plan_chunks([(5.0, 5.2), (20.0, 25.0)], 30.0, opt)
    assert chunks[0].duration_s == pytest.approx(1.0)
    assert chunks[0].start_s < 5.0 and chunks[0].end_s > 5.2
    # Widening is bounded by the file.
    chunks = plan_chunks([(0.0, 0.2)], 0.5, opt)
    assert spans(chunks) == [(0.0, 0.5)]


def test_unsorted_and_overlapping_regions():
    speech = [(20.0, 25.0), (1.0, 3.0), (2.0, 6.0), (24.0, 26.0)]
    opt = ChunkingOptions(pad_s=0.0, max_silence_s=3.0)
    chunks = plan_chunks(speech, 30.0, opt)
    assert spans(chunks) == [(1.0, 6.0), (20.0, 26.0)]


def test_options_are_validated():
    with pytest.raises(ValueError):
        ChunkingOptions(max_chunk_s=0)
    with pytest.raises(ValueError):
        ChunkingOptions(max_chunk_s=10, overlap_s=6)
    with pytest.raises(ValueError):
        ChunkingOptions(min_silence_s=2, max_silence_s=1)


@pytest.mark.parametrize("seed", range(300))
def test_random_layouts_keep_invariants(seed):
    rng = random.Random(seed)
    opt = ChunkingOptions(
        max_chunk_s=rng.choice([10.0, 20.0, 30.0]),
        overlap_s=rng.choice([0.0, 1.0, 2.0]),
        pad_s=rng.choice([0.0, 0.2, 0.5]),
        min_silence_s=rng.choice([0.0, 0.1, 0.3]),
        max_silence_s=rng.choice([1.0, 3.0, 8.0]),
        min_chunk_s=rng.choice([0.0, 1.0, 2.0]),
    )
    t, speech = rng.uniform(0, 5), []
    for _ in range(rng.randint(0, 40)):
        # Mostly sentences of a few seconds, sometimes a monologue far past the limit.
        length = rng.expovariate(1 / 6) if rng.random() < 0.9 else rng.uniform(30, 200)
        speech.append((t, t + length))
        t += length + rng.choice([rng.uniform(0.0, 0.5), rng.uniform(0.3, 2.0), rng.uniform(2, 60)])
    duration = t + rng.uniform(0, 10)
    chunks = plan_chunks(speech, duration, opt)
    check_plan(chunks, speech, duration, opt)
    if speech:
        assert chunks
    # A cut falls inside speech (is forced) only where no pause is in reach: the chunk
    # before it holds no whole pause, and the two chunks share overlap_s.
    merged = normalize_regions(speech, duration, opt.min_silence_s)
    pauses = list(zip([e for _, e in merged], [s for s, _ in merged[1:]]))
    for a, b in zip(chunks, chunks[1:]):
        in_speech = any(s + EPS < edge < e - EPS for s, e in merged for edge in (a.end_s, b.start_s))
        if in_speech or a.end_s - b.start_s > EPS:
            assert not any(a.start_s < p0 and p1 < a.end_s for p0, p1 in pauses), (a, pauses)
            assert a.end_s - b.start_s == pytest.approx(opt.overlap_s)


@pytest.mark.parametrize(
    "duration, max_s, overlap, expected_n",
    [
        (10.0, 30.0, 1.5, 1),
        (30.0, 30.0, 1.5, 1),
        (30.01, 30.0, 1.5, 2),
        (58.5, 30.0, 1.5, 2),
        (58.6, 30.0, 1.5, 3),
        (3 * 3600.0, 30.0, 1.5, 379),
        (100.0, 30.0, 0.0, 4),
    ],
)
def test_fixed_chunks(duration, max_s, overlap, expected_n):
    chunks = plan_fixed_chunks(duration, max_s, overlap, item_id="f")
    assert len(chunks) == expected_n
    assert chunks[0].start_s == 0.0 and chunks[-1].end_s == pytest.approx(duration)
    for c in chunks:
        assert c.duration_s <= max_s + EPS
    for a, b in zip(chunks, chunks[1:]):
        assert a.end_s - b.start_s == pytest.approx(overlap)
    assert covered(0.0, duration, chunks)


def test_fixed_chunks_empty_and_invalid():
    assert plan_fixed_chunks(0.0) == []
    with pytest.raises(ValueError):
        plan_fixed_chunks(100.0, 10.0, 5.0)


# --- online planning: the same plans while the file is still being decoded ------------------------

def random_layout(rng: np.random.Generator, *, monologues: float) -> tuple[list[tuple[float, float]], float]:
    """Speech regions as a VAD reports them (sorted, disjoint, ms times) and a duration.

    Mostly sentences, with gaps that are sometimes below min_silence (dense short pauses),
    sometimes between the silence limits and sometimes long; `monologues` is the share of
    regions far longer than a chunk. A third of the files have speech right up to the end.
    """
    t = 0.0 if rng.random() < 0.2 else rng.uniform(0, 3)
    regions = []
    for _ in range(rng.integers(0, 60)):
        length = rng.uniform(30, 200) if rng.random() < monologues else max(0.01, rng.exponential(6))
        regions.append((round(t, 3), round(t + length, 3)))
        t += length + rng.choice([rng.uniform(0.01, 0.15), rng.uniform(0.1, 1.0), rng.uniform(1, 4),
                                  rng.uniform(3, 60)])  # fmt: skip
    duration = regions[-1][1] if regions and rng.random() < 0.33 else t + rng.uniform(0, 10)
    return regions, duration


def random_chunking(rng: np.random.Generator) -> ChunkingOptions:
    return ChunkingOptions(
        max_chunk_s=float(rng.choice([10.0, 20.0, 30.0])),
        overlap_s=float(rng.choice([0.0, 1.0, 2.0])),
        pad_s=float(rng.choice([0.0, 0.2, 0.5])),
        min_silence_s=float(rng.choice([0.0, 0.1, 0.3])),
        max_silence_s=float(rng.choice([1.0, 3.0, 8.0])),
        min_chunk_s=float(rng.choice([0.0, 1.0, 2.0])),
    )


def feed_like_a_vad(planner, regions, duration, rng):
    """Tell `planner` the regions the way the stream does: a frontier moving in uneven blocks,
    regions closing some time after they end, the open one reported (sometimes before it is
    sure to stay), and the last regions only at finish."""
    out, t, k = [], 0.0, 0
    while t < duration + 5 and rng.random() > 0.03:
        t += float(rng.choice([0.032, 0.5, 1.0, 4.0, 30.0])) * rng.uniform(0.5, 1.5)
        lag = rng.uniform(0, 0.4)  # the silence the VAD waits for before it closes a region
        closed = []
        while k < len(regions) and regions[k][1] <= t - lag:
            closed.append(regions[k])
            k += 1
        if k < len(regions) and regions[k][0] < t:
            a, b = regions[k]
            settled = min(t, b) if rng.random() < 0.9 else a  # else: not sure yet it is speech
            out += planner.update(closed, a, settled)
        else:
            out += planner.update(closed, None, t)
    return out + planner.finish(regions[k:])


def fits_lookahead(regions, duration, opt: ChunkingOptions, lookahead: float) -> bool:
    """No stretch of continuous speech is too long to be seen whole from where its chunk starts."""
    margin = max(2 * opt.pad_s, opt.min_silence_s) + 0.01
    merged = normalize_regions(regions, duration, opt.min_silence_s)
    return all(b - a < lookahead - opt.pad_s - margin for a, b in merged)


def test_online_chunks_equal_plan_chunks_on_random_layouts():
    rng = np.random.default_rng(20240610)
    exact = 0
    for case in range(1500):
        opt = random_chunking(rng)
        regions, duration = random_layout(rng, monologues=0.01 if case % 2 else 0.15)
        online = feed_like_a_vad(OnlineChunker(opt, duration, "ep"), regions, duration, rng)
        # However the regions come, the plan is the same (it depends on the layout alone)...
        assert online == OnlineChunker(opt, duration, "ep").finish(regions), case
        check_plan(online, regions, duration, opt)
        assert bool(online) == bool(normalize_regions(regions, duration, opt.min_silence_s))
        # ...and where the speech fits in the look-ahead it is exactly the offline plan.
        if fits_lookahead(regions, duration, opt, OnlineChunker(opt, duration).lookahead_s):
            exact += 1
            assert online == plan_chunks(regions, duration, opt, item_id="ep"), case
    assert exact > 400  # a third of the layouts or more test equality, not just invariants


def test_online_chunker_never_needs_audio_it_said_could_go():
    """`needed_from_s` is what the stream's buffer trims to: no later chunk may start before it."""
    rng = np.random.default_rng(7)
    for case in range(300):
        opt = random_chunking(rng)
        regions, duration = random_layout(rng, monologues=0.1)
        chunker = OnlineChunker(opt, duration)
        promised, t, k = 0.0, 0.0, 0
        while t < duration + 5:
            t += float(rng.uniform(0.2, 8.0))
            closed = [r for r in regions[k:] if r[1] <= t]
            k += len(closed)
            opened = regions[k][0] if k < len(regions) and regions[k][0] < t else None
            settled = min(t, regions[k][1]) if opened is not None else t
            for c in chunker.update(closed, opened, settled):
                assert c.start_s >= promised - EPS, (case, c, promised)
            assert chunker.needed_from_s >= promised - EPS  # it only moves forward
            promised = chunker.needed_from_s
        for c in chunker.finish(regions[k:]):
            assert c.start_s >= promised - EPS, (case, c, promised)


def test_online_continuous_speech_is_cut_in_full_then_equal_pieces():
    opt = ChunkingOptions(max_chunk_s=30.0, overlap_s=1.5, pad_s=0.2)
    speech = [(2.0, 8.0), (9.0, 610.0), (615.0, 620.0)]  # a ten-minute monologue
    chunker = OnlineChunker(opt, 630.0, "m")
    assert chunker.lookahead_s == 60.0
    chunks = feed_like_a_vad(chunker, speech, 630.0, np.random.default_rng(1))
    check_plan(chunks, speech, 630.0, opt)
    forced = [(a, b) for a, b in zip(chunks, chunks[1:]) if a.end_s > b.start_s]
    assert forced and all(a.end_s - b.start_s == pytest.approx(1.5) for a, b in forced)
    lengths = [round(c.duration_s, 6) for c in chunks if 8.0 < c.start_s and c.end_s <= 610.2 + EPS]
    # Full pieces while the end is out of view, then equal pieces for the rest: no stub.
    assert lengths[0] == 30.0 and lengths[-1] == lengths[-2] > (30.0 + 1.5) / 2
    offline = plan_chunks(speech, 630.0, opt)
    assert len(chunks) <= len(offline) + 1


def test_online_chunker_lookahead_is_validated_and_empty_files_plan_nothing():
    opt = ChunkingOptions(max_chunk_s=30.0, max_silence_s=3.0)
    with pytest.raises(ValueError, match="lookahead"):
        OnlineChunker(opt, 100.0, lookahead_s=32.0)
    assert OnlineChunker(opt, 100.0, lookahead_s=33.1).lookahead_s == 33.1
    assert OnlineChunker(opt, 100.0).finish() == []
    assert OnlineChunker(opt, 0.0).finish([(0.0, 5.0)]) == []
    chunker = OnlineChunker(opt, 100.0)
    assert chunker.update([(1.0, 2.0)], None, 10.0) == []  # a later region could still join this chunk
    assert chunker.finish() == plan_chunks([(1.0, 2.0)], 100.0, opt)
    with pytest.raises(RuntimeError):
        chunker.update([], None, 20.0)
    # An unbounded look-ahead waits for the whole file: plan_chunks exactly, monologues too.
    speech = [(1.0, 200.0), (201.0, 205.0)]
    whole = feed_like_a_vad(OnlineChunker(opt, 210.0, lookahead_s=float("inf")), speech, 210.0,
                            np.random.default_rng(3))  # fmt: skip
    assert whole == plan_chunks(speech, 210.0, opt)


def test_online_clips_equal_plan_clips_on_random_layouts():
    rng = np.random.default_rng(99)
    for case in range(800):
        opt = ClipOptions(
            clip_s=float(rng.choice([5.0, 10.0, 30.0])),
            reach=float(rng.choice([0.0, 0.1, 0.25])),
            min_pause_s=float(rng.choice([0.0, 0.3, 1.0])),
            pad_s=float(rng.choice([0.0, 0.2, 0.6])),
        )
        regions, duration = random_layout(rng, monologues=0.05)
        if rng.random() < 0.05:
            duration = float(rng.uniform(0.1, 20.0))  # shorter than the speech said
        clipper = OnlineClipper(opt, duration, "c")
        clips = feed_like_a_vad(clipper, regions, duration, rng)
        assert clips == plan_clips(duration, regions, opt, item_id="c"), case
        assert clipper.needed_from_s == float("inf")


def test_online_clipper_decides_each_cut_once_the_frontier_passes_its_window():
    opt = ClipOptions(clip_s=30.0, reach=0.25, min_pause_s=0.3, pad_s=0.2)
    clipper = OnlineClipper(opt, 100.0, "c")
    # First cut: even position 25 s (4 clips), window [17.5, 30]; decided past 30 + 0.4.
    assert clipper.update([(0.0, 20.0)], 21.0, 30.0) == []
    (first,) = clipper.update([], 21.0, 30.5)
    assert first.index == 0 and first.end_s == pytest.approx(20.8)  # in the pause, nearest the target
    assert clipper.needed_from_s == first.end_s
    rest = plan_clips(100.0, [(0.0, 20.0), (21.0, 95.0)], opt, item_id="c")[1:]
    assert clipper.finish([(21.0, 95.0)]) == rest

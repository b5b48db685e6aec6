"""Packed speech: the time map back to the file and the packer, case by case and over random
speech layouts (the layouts and the VAD-like feed are test_chunking's)."""

from __future__ import annotations

import random

import numpy as np
import pytest
from test_chunking import feed_like_a_vad, random_chunking, random_layout, spans

from omnibatch.chunking import ChunkingOptions, OnlineChunker, plan_chunks
from omnibatch.packing import SpeechPacker, TimeMap, pack_chunks, packing_options
from omnibatch.records import Chunk


def test_timemap_offsets_and_clamps():
    chunk = Chunk("x", 3, 60.0, 90.0)
    m = TimeMap.for_chunk(chunk)
    assert m.to_file(0.0) == 60.0
    assert m.to_file(12.5) == 72.5
    assert m.to_file(31.0) == 90.0  # past the chunk's audio
    assert m.to_file(-1.0) == 60.0


def test_timemap_through_the_pieces_of_packed_speech():
    # Audio: [0, 5) is file 10-15, [5, 15) is file 20-30, [15, 20) is file 35-40.
    chunk = Chunk("x", 0, 10.0, 40.0, ((10.0, 15.0), (20.0, 30.0), (35.0, 40.0)))
    assert chunk.duration_s == 20.0 and chunk.spans == chunk.pieces
    m = TimeMap.for_chunk(chunk)
    assert [m.to_file(t) for t in (0.0, 2.5, 4.999, 5.0, 7.0, 14.0, 15.0, 19.5)] == pytest.approx(
        [10.0, 12.5, 14.999, 20.0, 22.0, 29.0, 35.0, 39.5])
    # At a join a start belongs to the later piece, an end to the earlier one.
    assert m.to_file(5.0, end=True) == 15.0 and m.to_file(15.0, end=True) == 30.0
    assert m.to_file(5.0) == 20.0
    # Clamped to the chunk outside its audio.
    assert m.to_file(-0.3) == 10.0 and m.to_file(20.0) == 40.0 and m.to_file(25.0, end=True) == 40.0
    # A contiguous chunk is one piece: an offset.
    assert TimeMap.for_chunk(Chunk("x", 1, 60.0, 90.0)).pieces == ((60.0, 90.0),)


def test_timemap_random_times_land_in_their_piece():
    rng = random.Random(5)
    for _ in range(300):
        t, spans_ = rng.uniform(0, 5), []
        for _ in range(rng.randint(1, 6)):
            a = t + rng.uniform(0, 10)
            spans_.append((a, a + rng.uniform(0.1, 8)))
            t = spans_[-1][1]
        m = TimeMap(tuple(spans_))
        offset = 0.0
        for a, b in spans_:
            x = rng.uniform(0, b - a)
            assert m.to_file(offset + x) == pytest.approx(a + x)  # piece k's start plus the offset
            assert a - 1e-9 <= m.to_file(offset + x, end=True) <= b + 1e-9
            offset += b - a


def test_packer_fills_chunks_with_speech_and_leaves_pauses_out():
    pieces = [Chunk("x", i, a, b) for i, (a, b) in
              enumerate([(0, 10), (12, 25), (25, 30), (40, 50), (48.5, 60), (70, 71), (75, 100)])]
    got = pack_chunks(pieces, 30.0, item_id="x")
    assert [(c.index, c.start_s, c.end_s, c.pieces) for c in got] == [
        (0, 0.0, 30.0, ((0.0, 10.0), (12.0, 30.0))),  # touching pieces are one span
        (1, 40.0, 50.0, ()),  # the next one overlaps it (a forced cut): a new chunk
        (2, 48.5, 71.0, ((48.5, 60.0), (70.0, 71.0))),
        (3, 75.0, 100.0, ()),  # 12.5 + 25 > 30
    ]
    assert [c.duration_s for c in got] == [28.0, 10.0, 12.5, 25.0]
    packer = SpeechPacker(30.0, "x")  # online: a chunk comes out when the next piece does not fit
    assert packer.add(pieces[0]) == [] and packer.add(pieces[1]) == [] and packer.add(pieces[2]) == []
    assert packer.add(pieces[3]) == [got[0]]
    assert pack_chunks([], 30.0) == [] and SpeechPacker(30.0).finish() == []
    with pytest.raises(ValueError):
        SpeechPacker(0.0)


def test_packing_options_end_a_piece_at_every_pause():
    opt = packing_options(ChunkingOptions(max_chunk_s=30.0, pad_s=0.2, max_silence_s=3.0))
    assert opt.pad_s == 0.4 and opt.max_silence_s == opt.min_silence_s == 0.1 and opt.max_chunk_s == 30.0
    pieces = plan_chunks([(1.0, 5.0), (5.05, 5.4), (5.9, 9.0), (10.5, 14.0)], 20.0, opt)
    # One piece per region (a 0.05 s gap is no pause); a pause under twice the pad is split
    # in its middle, a longer one keeps 0.4 s on each side.
    assert spans(pieces) == [(0.6, 5.65), (5.65, 9.4), (10.1, 14.4)]
    packed = pack_chunks(pieces, 30.0)
    assert len(packed) == 1 and packed[0].pieces == ((0.6, 9.4), (10.1, 14.4))
    assert packed[0].duration_s == pytest.approx(13.1)
    assert packing_options(ChunkingOptions(max_chunk_s=2.0, overlap_s=0.5, pad_s=0.2)).pad_s == 0.25


def union(spans_: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The spans' union, touching spans joined."""
    out: list[list[float]] = []
    for a, b in sorted(spans_):
        if out and a <= out[-1][1] + 1e-9:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


@pytest.mark.parametrize("seed", range(4))
def test_packed_plans_on_random_layouts_keep_all_speech(seed):
    rng = np.random.default_rng(seed)
    for case in range(300):
        opt = packing_options(random_chunking(rng))
        regions, duration = random_layout(rng, monologues=0.05)
        pieces = plan_chunks(regions, duration, opt, item_id="p")
        packed = pack_chunks(pieces, opt.max_chunk_s, item_id="p")
        # The same plan however the pieces come (one at a time, as the stream gives them).
        online = OnlineChunker(opt, duration, "p")
        fed = feed_like_a_vad(online, regions, duration, rng)
        assert pack_chunks(fed, opt.max_chunk_s, item_id="p") == pack_chunks(
            OnlineChunker(opt, duration, "p").finish(regions), opt.max_chunk_s, item_id="p"), case
        assert [c.index for c in packed] == list(range(len(packed)))
        # Exactly the pieces' audio, in order, none of it twice inside a chunk.
        flat = [span for c in packed for span in c.spans]
        joined = union([(p.start_s, p.end_s) for p in pieces])
        assert np.allclose(union(flat), joined) if joined else not flat, case
        for c in packed:
            assert c.duration_s <= opt.max_chunk_s + 1e-6, case
            assert c.start_s == c.spans[0][0] and c.end_s == c.spans[-1][1]
            assert all(b > a for a, b in c.spans)
            assert all(x[1] < y[0] for x, y in zip(c.spans, c.spans[1:])), case  # gaps between pieces
        # Greedy: the next chunk's first piece would not have fitted, or it overlaps (a forced cut).
        for c, d in zip(packed, packed[1:]):
            first = next(p for p in pieces if abs(p.start_s - d.start_s) < 1e-9)
            assert c.duration_s + first.duration_s > opt.max_chunk_s - 1e-6 or d.start_s < c.end_s - 1e-9, case

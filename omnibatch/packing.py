"""Packed speech: chunks made of several pieces of speech, the pauses between them left out.

A Whisper window holds 30 s of audio. Cut from contiguous audio in pauses, a
chunk spends part of that on silence; packed, it holds up to `max_chunk_s` of
speech (as faster-whisper's batched pipeline does), which measured better on
the long-form benchmark (benchmarks/README.md, "Packed speech").

    pieces = OnlineChunker(packing_options(options), ...)   # one piece per speech region, padded
    chunks = pack_chunks(pieces, 30.0)                       # pieces joined up to 30 s of audio
    TimeMap.for_chunk(chunk).to_file(t)                      # a time in a chunk's audio -> the file

Pure planning and arithmetic, no audio: `pipeline.stream` slices the samples.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from omnibatch.chunking import ChunkingOptions
from omnibatch.records import Chunk

_EPS = 1e-6  # as chunking's: keeps margins strict against float rounding


@dataclass(frozen=True)
class TimeMap:
    """Maps a time inside a chunk's audio to the file's timeline.

    `pieces` are the file-time spans the chunk's audio is made of, in order (one span for
    a contiguous chunk, so the map is an offset; several for packed speech, whose audio is
    the pieces' samples one after another). A time t in the audio falls in piece k when
    t lies between the pieces' cumulative lengths before and after k; it maps to piece k's
    file start plus t's offset into the piece. Times outside the audio are clamped to the
    chunk, since an engine may report a timestamp slightly past the audio it was given.
    """

    pieces: tuple[tuple[float, float], ...]

    @classmethod
    def for_chunk(cls, chunk: Chunk) -> TimeMap:
        return cls(tuple(chunk.spans))

    @property
    def start_s(self) -> float:
        return self.pieces[0][0]

    @property
    def end_s(self) -> float:
        return self.pieces[-1][1]

    def to_file(self, t: float, *, end: bool = False) -> float:
        """File time of audio time `t`. At a join between two pieces, a start (`end` False)
        belongs to the later piece and an end (`end` True) to the earlier one, so a word
        that ends where a piece ends is not stretched over the silence left out."""
        if t <= 0:
            return self.start_s
        offset = 0.0
        for a, b in self.pieces:
            length = b - a
            if t < offset + length or (end and t <= offset + length):
                return a + (t - offset)
            offset += length
        return self.end_s



class SpeechPacker:
    """Packs consecutive pieces of speech into chunks of at most `max_chunk_s` of audio.

    Pure planning over final pieces (the chunks `OnlineChunker` returns, cut at every long
    pause): each packed chunk takes pieces in order while their total length fits, and its
    audio is their samples one after another, without the silence between them (a Whisper
    window then holds up to `max_chunk_s` of speech instead of speech and pauses). A piece
    that overlaps the one before it (a forced cut inside continuous speech) starts a new
    chunk, so no audio is heard twice within a chunk and the stitcher resolves the overlap
    at the seam. Pieces that touch are joined into one span. Online: a chunk is final when
    the piece after it does not fit (or at `finish`), so it waits for one piece at most,
    and the plan depends only on the pieces.
    """

    def __init__(self, max_chunk_s: float, item_id: str = "") -> None:
        if not max_chunk_s > 0:
            raise ValueError(f"max_chunk_s must be positive, got {max_chunk_s}")
        self.max_chunk_s = float(max_chunk_s)
        self.item_id = item_id
        self._spans: list[list[float]] = []  # the chunk being filled
        self._count = 0

    @property
    def pending_s(self) -> float:
        return sum(b - a for a, b in self._spans)

    def add(self, piece: Chunk) -> list[Chunk]:
        """Take the next piece (in file order); return the chunk it closes, if any."""
        out: list[Chunk] = []
        for a, b in piece.spans:
            out += self._add_span(float(a), float(b))
        return out

    def finish(self) -> list[Chunk]:
        """The last chunk, if pieces are pending."""
        return [self._close()] if self._spans else []

    def _add_span(self, a: float, b: float) -> list[Chunk]:
        if b <= a:
            return []
        out: list[Chunk] = []
        if self._spans:
            overlaps = a < self._spans[-1][1] - _EPS
            too_long = self.pending_s + (b - a) > self.max_chunk_s + 1e-9
            if overlaps or too_long:
                out.append(self._close())
        if self._spans and abs(a - self._spans[-1][1]) <= _EPS:
            self._spans[-1][1] = b  # touches the last span: one span
        else:
            self._spans.append([a, b])
        return out

    def _close(self) -> Chunk:
        spans = tuple((a, b) for a, b in self._spans)
        self._spans = []
        chunk = Chunk(self.item_id, self._count, spans[0][0], spans[-1][1], spans if len(spans) > 1 else ())
        self._count += 1
        return chunk


def pack_chunks(pieces: Iterable[Chunk], max_chunk_s: float, *, item_id: str = "") -> list[Chunk]:
    """`SpeechPacker` over all of `pieces` at once."""
    packer = SpeechPacker(max_chunk_s, item_id)
    out: list[Chunk] = []
    for piece in pieces:
        out += packer.add(piece)
    return out + packer.finish()


def packing_options(options: ChunkingOptions, pad_s: float = 0.4) -> ChunkingOptions:
    """The piece plan for packed speech: `options` with every pause (a gap of `min_silence_s`
    or more) ending a piece, so each piece is one speech region (cut with an overlap only
    where it alone runs past `max_chunk_s`), and `pad_s` of silence kept on each side of it
    (never more than an eighth of a chunk). Pieces closer than twice the pad touch, and
    the packer joins them: only the silence beyond the pads is left out."""
    from dataclasses import replace

    pad = min(pad_s, options.max_chunk_s / 8)
    return replace(options, pad_s=pad, max_silence_s=options.min_silence_s)

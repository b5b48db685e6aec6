"""One decode pass per file: the same audio stream finds the speech and gives each chunk its samples.

A file's audio is decoded once, by one ffmpeg process (`omnibatch.media.stream_audio`),
block by block. Each block goes to the VAD (`SpeechDetector`), whose closed regions
and settled frontier drive an online planner (`OnlineChunker` for speech chunks,
`OnlineClipper` for caption clips); each chunk it returns is sliced out of a
buffer of the same stream. Nothing seeks and nothing is decoded twice, and the
buffer only holds audio from the earliest chunk still to come to what has been
decoded, so memory stays flat however long the file is.

A reader thread pulls the blocks from ffmpeg while the VAD scores the previous
ones, so decoding and VAD overlap instead of taking turns. The planning itself is
pure and lives in `chunking`, `packing`, `clipping` and `vad`.
"""

from __future__ import annotations

import math
import os
import queue
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol, cast

import numpy as np

from omnibatch.chunking import ChunkingOptions, OnlineChunker, plan_fixed_chunks
from omnibatch.clipping import ClipOptions, OnlineClipper, plan_clips
from omnibatch.media import SAMPLE_RATE, stream_audio
from omnibatch.packing import SpeechPacker, packing_options
from omnibatch.records import Chunk
from omnibatch.vad import Region, SpeechDetector, VadOptions

# Seconds per block read from ffmpeg: enough windows (125) for one efficient VAD call, small
# next to the chunker's look-ahead so the buffer stays near that.
BLOCK_S = 4.0
# Blocks the reader thread may hold ahead of the VAD: ffmpeg keeps decoding while a block is scored.
READ_AHEAD = 2


@dataclass
class StreamStats:
    """What one pass did: filled in as it goes, for tests and benchmarks."""

    audio_s: float = 0.0  # decoded
    blocks: int = 0
    chunks: int = 0
    peak_buffer_s: float = 0.0  # the most audio held for chunks at one time


def stream_speech_chunks(
    path: str | os.PathLike[str],
    duration_s: float,
    chunking: ChunkingOptions,
    vad: VadOptions | None = VadOptions(),
    *,
    item_id: str,
    lookahead_s: float | None = None,
    pack: bool = False,
    block_s: float = BLOCK_S,
    read_ahead: int = READ_AHEAD,
    stats: StreamStats | None = None,
) -> Iterator[tuple[Chunk, np.ndarray]]:
    """Each speech chunk of `path` with its 16 kHz mono samples, in order, from one decode pass.

    Chunks are cut in pauses as `plan_chunks` cuts them (see `OnlineChunker` for the one
    difference, in monologues longer than `lookahead_s`). `vad` None: the fixed
    overlapping chunks of `plan_fixed_chunks`, from the same single stream. A chunk's
    samples are what `decode_audio(path, start_s=..., duration_s=...)` would give, up to
    the resampler's edge effects; fewer where the audio ends before `duration_s`.
    `pack` (with VAD): packed speech. The file is cut into pieces at every pause longer than
    twice the pad (`packing_options`), and consecutive pieces are packed into chunks of at
    most `max_chunk_s` of audio (`SpeechPacker`): a chunk's samples are its pieces' samples
    one after another, and `chunk.pieces` says where each came from in the file.
    Raises MediaError when ffmpeg cannot decode the audio (possibly after some chunks).
    """
    duration = float(duration_s)
    if not duration > 0:
        return
    blocks = _blocks(path, block_s, read_ahead)
    if vad is None:
        planned = plan_fixed_chunks(duration, chunking.max_chunk_s, chunking.overlap_s, item_id=item_id)
        cuts = _cut(blocks, None, _Planned(planned), with_audio=True, stats=stats)
    elif pack:
        chunker = OnlineChunker(packing_options(chunking), duration, item_id, lookahead_s=lookahead_s)
        pieces = _cut(blocks, SpeechDetector(vad), chunker, with_audio=True, stats=stats)
        cuts = _packed(cast(Iterator[tuple[Chunk, np.ndarray]], pieces),
                       SpeechPacker(chunking.max_chunk_s, item_id), stats)
    else:
        chunker = OnlineChunker(chunking, duration, item_id, lookahead_s=lookahead_s)
        cuts = _cut(blocks, SpeechDetector(vad), chunker, with_audio=True, stats=stats)
    # `yield from`, so closing this generator early closes the pass (and stops ffmpeg) at once.
    yield from cast(Iterator[tuple[Chunk, np.ndarray]], cuts)  # with_audio: never None


def stream_clips(
    path: str | os.PathLike[str],
    duration_s: float,
    clip: ClipOptions,
    *,
    vad: bool,
    with_audio: bool,
    item_id: str,
    block_s: float = BLOCK_S,
    read_ahead: int = READ_AHEAD,
    stats: StreamStats | None = None,
) -> Iterator[tuple[Chunk, np.ndarray | None]]:
    """The caption clips of `path` (tiling [0, duration_s], as `plan_clips`), each with its audio.

    vad: move the cuts into pauses found by Silero VAD in the same stream that gives the
        clips' audio. with_audio: slice each clip's samples (else None). A clip that starts
        after the sound has ended gets an empty array. For a file with no audio stream pass
        both False: the clips come from the duration alone and no ffmpeg process runs.
    """
    duration = float(duration_s)
    if not duration > 0:
        return
    if not vad:
        clips = plan_clips(duration, (), clip, item_id=item_id)
        if not with_audio:
            yield from ((c, None) for c in clips)
            return
        blocks = _blocks(path, block_s, read_ahead)
        yield from _cut(blocks, None, _Planned(clips), with_audio=True, stats=stats)
        return
    clipper = OnlineClipper(clip, duration, item_id)
    yield from _cut(_blocks(path, block_s, read_ahead), SpeechDetector(VadOptions()), clipper,
                    with_audio=with_audio, stats=stats)  # fmt: skip


# -- the pass ---------------------------------------------------------------------------------


class _Planner(Protocol):
    """What `_cut` needs from a planner: `OnlineChunker`, `OnlineClipper` or `_Planned`."""

    def update(
        self, regions: Iterable[Region], open_start_s: float | None, frontier_s: float
    ) -> list[Chunk]: ...

    def finish(self, regions: Iterable[Region] = ()) -> list[Chunk]: ...

    @property
    def needed_from_s(self) -> float: ...


class _Planned:
    """A plan known before decoding (no VAD): all of it is final at once."""

    def __init__(self, chunks: list[Chunk]) -> None:
        self._chunks: list[Chunk] | None = chunks

    def update(self, regions: Iterable[Region], open_start_s: float | None, frontier_s: float) -> list[Chunk]:
        chunks, self._chunks = self._chunks or [], None
        return chunks

    def finish(self, regions: Iterable[Region] = ()) -> list[Chunk]:
        return self.update(regions, None, math.inf)

    @property
    def needed_from_s(self) -> float:
        return math.inf if self._chunks is None else 0.0


def _cut(
    blocks: Iterator[np.ndarray],
    detector: SpeechDetector | None,
    planner: _Planner,
    *,
    with_audio: bool,
    stats: StreamStats | None,
) -> Iterator[tuple[Chunk, np.ndarray | None]]:
    """Feed each block to the detector and the planner, and hand out chunks as their audio arrives."""
    stats = stats if stats is not None else StreamStats()
    window = _SampleWindow(SAMPLE_RATE) if with_audio else None
    ready: deque[Chunk] = deque()  # final, waiting for the end of their audio to be decoded

    def take(chunk: Chunk) -> tuple[Chunk, np.ndarray | None]:
        stats.chunks += 1
        return chunk, (window.take(chunk.start_s, chunk.end_s) if window is not None else None)

    try:
        for block in blocks:
            stats.blocks += 1
            stats.audio_s += block.size / SAMPLE_RATE
            if window is not None:
                window.append(block)
                stats.peak_buffer_s = max(stats.peak_buffer_s, window.held_s)
            if detector is not None:
                closed = detector.feed(block)
                ready += planner.update(closed, detector.open_start_s, detector.settled_s)
            else:
                ready += planner.update((), None, math.inf)
            while ready and (window is None or window.covers(ready[0].end_s)):
                yield take(ready.popleft())
            if window is not None:
                keep = min(ready[0].start_s if ready else math.inf, planner.needed_from_s)
                window.drop_before(keep)
        ready += planner.finish(detector.finish() if detector is not None else ())
        while ready:
            yield take(ready.popleft())
    finally:
        close = getattr(blocks, "close", None)
        if close is not None:
            close()


def _packed(
    pieces: Iterator[tuple[Chunk, np.ndarray]], packer: SpeechPacker, stats: StreamStats | None
) -> Iterator[tuple[Chunk, np.ndarray]]:
    """Pack the pieces (with their samples) into chunks; a chunk's samples are its pieces' in order.

    Only the pieces of the chunk being filled are held: at most `max_chunk_s` of samples.
    """
    held: deque[tuple[Chunk, np.ndarray]] = deque()
    count = 0

    def samples_of(chunk: Chunk) -> np.ndarray:
        nonlocal count
        parts = []
        while held and held[0][0].start_s < chunk.end_s - 1e-6:
            parts.append(held.popleft()[1])
        count += 1
        if stats is not None:
            stats.chunks = count  # chunks handed out, not pieces
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)

    try:
        for piece, audio in pieces:
            closed = packer.add(piece)
            for chunk in closed:
                yield chunk, samples_of(chunk)
            held.append((piece, audio))
        for chunk in packer.finish():
            yield chunk, samples_of(chunk)
    finally:
        close = getattr(pieces, "close", None)
        if close is not None:
            close()


class _SampleWindow:
    """The decoded samples from the earliest one still needed to the newest, in one array.

    Dropping moves a head index; appending compacts the array (or grows it by half) only
    when the tail is full, so each sample is copied a bounded number of times.
    """

    def __init__(self, sample_rate: int) -> None:
        self.rate = sample_rate
        self._buf = np.empty(0, dtype=np.float32)
        self._origin = 0  # stream index of _buf[0]
        self._head = 0  # first sample still held, in _buf
        self._filled = 0  # samples written to _buf

    @property
    def held_s(self) -> float:
        return (self._filled - self._head) / self.rate

    def covers(self, t: float) -> bool:
        """Has the stream been decoded up to time `t`?"""
        return self._index(t) <= self._origin + self._filled

    def append(self, block: np.ndarray) -> None:
        n = block.size
        if self._filled + n > self._buf.size:
            held = self._filled - self._head
            if held + n > self._buf.size:
                grown = np.empty(int((held + n) * 1.5) + 1024, dtype=np.float32)
                grown[:held] = self._buf[self._head : self._filled]
                self._buf = grown
            else:
                self._buf[:held] = self._buf[self._head : self._filled]
            self._origin += self._head
            self._head, self._filled = 0, held
        self._buf[self._filled : self._filled + n] = block
        self._filled += n

    def drop_before(self, t: float) -> None:
        """Forget the samples before time `t` (nothing to come starts earlier)."""
        if math.isinf(t):
            self._head = self._filled
            return
        self._head = min(max(self._head, self._index(t) - self._origin), self._filled)

    def take(self, start_s: float, end_s: float) -> np.ndarray:
        """A copy of the samples of [start_s, end_s), as far as the stream reaches."""
        i0, i1 = self._index(start_s) - self._origin, self._index(end_s) - self._origin
        if i0 < self._head:
            raise RuntimeError(f"samples from {start_s:.3f} s were dropped before their chunk came")
        i1 = min(i1, self._filled)
        return self._buf[i0:i1].copy() if i1 > i0 else np.zeros(0, dtype=np.float32)

    def _index(self, t: float) -> int:
        return round(t * self.rate)


# -- reading ahead ----------------------------------------------------------------------------


def _blocks(path: str | os.PathLike[str], block_s: float, read_ahead: int) -> Iterator[np.ndarray]:
    """The file's audio in blocks from one ffmpeg process, read `read_ahead` blocks ahead on a thread."""
    if read_ahead <= 0:
        return stream_audio(path, block_s=block_s)
    return _read_ahead(lambda: stream_audio(path, block_s=block_s), read_ahead)


@dataclass
class _Failed:
    error: BaseException


_END = object()


def _read_ahead(open_blocks, depth: int) -> Iterator[np.ndarray]:
    """Pull blocks on a thread, at most `depth` ahead of the consumer.

    ffmpeg is its own process, but its pipe holds only about a second of audio: without a
    reader it waits while the VAD scores a block. The thread spends its time in readinto
    (no GIL) and the VAD in onnxruntime (no GIL), so the two run side by side. Errors
    are raised in the consumer; closing the consumer stops ffmpeg.
    """
    slots: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def pump() -> None:
        blocks = None
        last: object = _END
        try:
            blocks = open_blocks()
            for block in blocks:
                if not put(block):
                    break
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, which raises it
            last = _Failed(e)
        finally:
            if blocks is not None:
                blocks.close()  # kills ffmpeg when the consumer stopped early
        put(last)

    thread = threading.Thread(target=pump, name="omnibatch-audio-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = slots.get()
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        while thread.is_alive():  # drain, so a blocked put sees the stop
            try:
                slots.get(timeout=0.05)
            except queue.Empty:
                pass
        thread.join()

"""Where a file's speech is, and its chunks' samples, from one streamed pass over its audio."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from omnibatch.chunking import ChunkingOptions
from omnibatch.config import RunConfig
from omnibatch.records import Chunk, MediaInfo, MediaItem

PACK_MIN_SILENCE_S = 0.16  # the VAD's shortest pause when speech is packed


def chunking_options(chunk_seconds: float) -> ChunkingOptions:
    """Chunks of at most `chunk_seconds`; overlap and padding shrink with very short chunks so
    every length from 2 s up is valid."""
    length = chunk_seconds
    return ChunkingOptions(max_chunk_s=length, min_chunk_s=min(1.0, length / 2),
                           overlap_s=min(1.5, length / 4), pad_s=min(0.2, length / 8))


def speech_chunks(item: MediaItem, info: MediaInfo, config: RunConfig) -> Iterator[tuple[Chunk, np.ndarray]]:
    """Each speech chunk of the file with its samples, cut in pauses as the stream goes by
    (fixed overlapping chunks when VAD is off), or packed from pieces of speech with the pauses
    left out when `config.packs_speech` (VAD on). One ffmpeg process, no seeking."""
    from omnibatch.pipeline.stream import stream_speech_chunks
    from omnibatch.vad import VadOptions

    pack = config.packs_speech and config.vad
    # Packed speech cuts in any pause the VAD finds, so it looks for shorter ones (as the peer's
    # batched pipeline does, 160 ms): more places to cut, so windows fill closer to chunk_seconds.
    vad = (VadOptions(min_silence_s=PACK_MIN_SILENCE_S) if pack else VadOptions()) if config.vad else None
    return stream_speech_chunks(item.path, info.duration_s, chunking_options(config.chunk_seconds), vad,
                                item_id=item.id, pack=pack)

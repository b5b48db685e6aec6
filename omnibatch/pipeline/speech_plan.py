"""Where to cut a file's speech: Silero VAD over the streamed audio, then pure chunk planning."""

from __future__ import annotations

from omnibatch.chunking import ChunkingOptions, plan_chunks, plan_fixed_chunks
from omnibatch.config import RunConfig
from omnibatch.records import Chunk, MediaInfo, MediaItem


def plan_speech_chunks(item: MediaItem, info: MediaInfo, config: RunConfig) -> list[Chunk]:
    """Chunks of at most `config.chunk_seconds`, cut in pauses; fixed overlapping chunks without VAD.

    The VAD pass streams the audio in blocks, so planning a 3-hour file holds one
    block at a time; each chunk is decoded again on its own when it is loaded.
    """
    # Overlap and padding shrink with very short chunks so every length from 2 s up is valid.
    length = config.chunk_seconds
    options = ChunkingOptions(max_chunk_s=length, min_chunk_s=min(1.0, length / 2),
                              overlap_s=min(1.5, length / 4), pad_s=min(0.2, length / 8))
    if not config.vad:
        return plan_fixed_chunks(info.duration_s, options.max_chunk_s, options.overlap_s, item_id=item.id)
    from omnibatch.media import stream_audio
    from omnibatch.vad import detect_speech

    speech = detect_speech(stream_audio(item.path))
    return plan_chunks(speech, info.duration_s, options, item_id=item.id)

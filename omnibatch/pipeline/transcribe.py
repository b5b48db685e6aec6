"""The transcribe task: speech regions -> ASR requests -> one stitched transcript per file."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

from omnibatch.config import SUBTITLE_FORMATS, RunConfig
from omnibatch.errors import MediaError
from omnibatch.output.tables import FileRow, SegmentRow, TranscribeRow
from omnibatch.pipeline.tasks import FileResult, NoSpeech, RegionRequest
from omnibatch.records import Chunk, Generation, MediaInfo, MediaItem, Request


@dataclass
class TranscribeTask(NoSpeech):
    config: RunConfig
    name: str = "transcribe"
    row_type: ClassVar[type[FileRow]] = TranscribeRow
    hold_seconds: ClassVar[float] = 1800.0  # ~115 MB of 16 kHz float32 decoded ahead of the engine

    def decode(self, item: MediaItem, info: MediaInfo) -> Iterator[RegionRequest]:
        from omnibatch.pipeline.speech_plan import speech_chunks

        if not info.has_audio:
            raise MediaError(f"{item.path.name} has no audio stream: there is nothing to transcribe")
        for chunk, audio in speech_chunks(item, info, self.config):
            yield RegionRequest(chunk, self.asr_request(item, chunk, audio))

    def asr_request(self, item: MediaItem, chunk: Chunk, audio) -> Request:
        from omnibatch.prompts import asr_prompt

        language = item.language or self.config.language
        return Request(id=chunk.id, prompt=asr_prompt(language), audio=audio, language=language,
                       max_new_tokens=self.config.max_new_tokens)

    def followup(self, item, info, chunks, generations, rounds) -> list[Request]:
        return []

    def finish(self, base: FileRow, item: MediaItem, info: MediaInfo, chunks: list[Chunk],
               generations: list[Generation], rounds: list[list[Generation]]) -> FileResult:
        from omnibatch.stitching import stitch

        stitched = stitch(chunks, generations, duration_s=info.duration_s)
        subtitle_formats = [f for f in self.config.formats if f in SUBTITLE_FORMATS]
        if subtitle_formats:
            from omnibatch.output.subtitles import write_subtitles

            write_subtitles(self.config.out_dir / "subtitles", item.id, stitched.segments, stitched.text,
                            subtitle_formats)
        segments = [SegmentRow(id=item.id, index=i, start_s=s.start_s, end_s=s.end_s, text=s.text)
                    for i, s in enumerate(stitched.segments)]
        row = TranscribeRow.extend(base, text=stitched.text, num_chunks=len(chunks))
        return FileResult(row=row, segments=segments)

"""The transcribe task: speech regions -> ASR requests -> one stitched transcript per file."""

from __future__ import annotations

from dataclasses import dataclass

from omnibatch.config import SUBTITLE_FORMATS, RunConfig
from omnibatch.errors import MediaError
from omnibatch.pipeline.tasks import FileResult
from omnibatch.records import Chunk, Generation, MediaInfo, MediaItem, Request


@dataclass
class TranscribeTask:
    config: RunConfig
    name: str = "transcribe"

    def plan(self, item: MediaItem, info: MediaInfo) -> list[Chunk]:
        from omnibatch.pipeline.speech_plan import plan_speech_chunks

        if not info.has_audio:
            raise MediaError(f"{item.path.name} has no audio stream: there is nothing to transcribe")
        return plan_speech_chunks(item, info, self.config)

    def load(self, item: MediaItem, info: MediaInfo, chunk: Chunk) -> Request:
        from omnibatch.media import decode_audio
        from omnibatch.prompts import asr_prompt

        audio = decode_audio(item.path, start_s=chunk.start_s, duration_s=chunk.duration_s)
        language = item.language or self.config.language
        return Request(id=chunk.id, prompt=asr_prompt(language), audio=audio, language=language,
                       max_new_tokens=self.config.max_new_tokens)

    def followup(self, item, info, chunks, generations, rounds) -> list[Request]:
        return []

    def finish(self, item: MediaItem, info: MediaInfo, chunks: list[Chunk], generations: list[Generation],
               rounds: list[list[Generation]]) -> FileResult:
        from omnibatch.stitching import stitch

        stitched = stitch(chunks, generations, duration_s=info.duration_s)
        subtitle_formats = [f for f in self.config.formats if f in SUBTITLE_FORMATS]
        if subtitle_formats:
            from omnibatch.output.subtitles import write_subtitles

            write_subtitles(self.config.out_dir / "subtitles", item.id, stitched.segments, stitched.text,
                            subtitle_formats)
        segments = [
            {"id": item.id, "index": i, "start_s": s.start_s, "end_s": s.end_s, "text": s.text}
            for i, s in enumerate(stitched.segments)
        ]
        return FileResult(row={"text": stitched.text, "num_chunks": len(chunks)}, segments=segments)

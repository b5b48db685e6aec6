"""The transcribe task: speech regions -> ASR requests -> one stitched transcript per file.

A file's row holds its language (the one given, else the one its chunks were
detected in, with its probability) and its mean token log-probability; its
segments and words (`DIR/segments/`, `DIR/words/`) carry their times in the
file's timeline and the confidences the engine gives.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import ClassVar

from omnibatch.config import SUBTITLE_FORMATS, RunConfig
from omnibatch.errors import InputError, MediaError
from omnibatch.output.tables import FileRow, SegmentRow, TranscribeRow, WordRow
from omnibatch.pipeline.tasks import FileResult, NoSpeech, RegionRequest
from omnibatch.records import Chunk, Generation, MediaInfo, MediaItem, Request

log = logging.getLogger("omnibatch")


@dataclass
class TranscribeTask(NoSpeech):
    config: RunConfig
    name: str = "transcribe"
    row_type: ClassVar[type[FileRow]] = TranscribeRow
    hold_seconds: ClassVar[float] = 1800.0  # ~115 MB of 16 kHz float32 decoded ahead of the engine
    language: str | None = field(init=False, default=None)  # --language as a code

    def __post_init__(self) -> None:
        self.language = check_transcribe_config(self.config)

    def decode(self, item: MediaItem, info: MediaInfo) -> Iterator[RegionRequest]:
        from omnibatch.pipeline.speech_plan import speech_chunks

        if not info.has_audio:
            raise MediaError(f"{item.path.name} has no audio stream: there is nothing to transcribe")
        for chunk, audio in speech_chunks(item, info, self.config):
            yield RegionRequest(chunk, self.asr_request(item, chunk, audio))

    def asr_request(self, item: MediaItem, chunk: Chunk, audio) -> Request:
        from omnibatch.prompts import asr_prompt

        language = item.language or self.language
        # Word times are the transcribe task's output; summarize reads only the text.
        word_times = self.config.word_timestamps and self.config.task == "transcribe"
        return Request(id=chunk.id, prompt=asr_prompt(language), audio=audio, language=language,
                       max_new_tokens=self.config.max_new_tokens, word_times=word_times)

    def followup(self, item, info, chunks, generations, rounds) -> list[Request]:
        return []

    def finish(self, base: FileRow, item: MediaItem, info: MediaInfo, chunks: list[Chunk],
               generations: list[Generation], rounds: list[list[Generation]]) -> FileResult:
        from omnibatch.stitching import stitch

        stitched = stitch(chunks, generations, duration_s=info.duration_s)
        given = item.language or self.language
        language = given or stitched.language
        probability = None if given else stitched.language_probability
        subtitle_formats = [f for f in self.config.formats if f in SUBTITLE_FORMATS]
        if subtitle_formats:
            from omnibatch.output.subtitles import write_subtitles

            write_subtitles(self.config.out_dir / "subtitles", item.id, stitched.segments, stitched.text,
                            subtitle_formats, max_line=self.config.max_line_width,
                            max_lines=self.config.max_line_count, language=language)
        segments, words = [], []
        for i, s in enumerate(stitched.segments):
            segments.append(SegmentRow(id=item.id, index=i, start_s=s.start_s, end_s=s.end_s, text=s.text,
                                       avg_logprob=_rounded(s.avg_logprob),
                                       no_speech_prob=_rounded(s.no_speech_prob)))
            for w in s.words or []:
                words.append(WordRow(id=item.id, segment=i, index=len(words), start_s=w.start_s,
                                     end_s=w.end_s, word=w.text, probability=_rounded(w.probability)))
        row = TranscribeRow.extend(base, text=stitched.text, num_chunks=len(chunks),
                                   language_probability=probability, avg_logprob=stitched.avg_logprob)
        row.language = language
        score_against_reference(row, item, self.config)
        return FileResult(row=row, segments=segments, words=words)


REFERENCE_KEYS = ("text",)  # NeMo's manifests hold the reference transcript in `text`


def reference_of(item: MediaItem, config: RunConfig) -> str | None:
    """The item's reference transcript: the manifest key `--reference-key` names, else `text`."""
    for key in ([config.reference_key] if config.reference_key else REFERENCE_KEYS):
        value = item.extra.get(key)
        if isinstance(value, str) and value.strip():
            return value
    return None


def score_against_reference(row: TranscribeRow, item: MediaItem, config: RunConfig) -> None:
    """Fill `wer`, `cer` and the reference's length when the item carries a reference."""
    reference = reference_of(item, config)
    if reference is None:
        return
    from omnibatch.scoring import score

    s = score(reference, row.text or "", config.normalizer)
    row.wer, row.cer = _rounded(s.wer), _rounded(s.cer)
    row.reference_words, row.reference_chars = s.reference_words, s.reference_chars


def check_transcribe_config(config: RunConfig) -> str | None:
    """Refuse options a transcribe run cannot use, before any work; returns `--language` as a code."""
    from omnibatch.languages import normalize_language, qwen_speaks

    from omnibatch.scoring import NORMALIZERS

    problems = []
    if config.normalizer not in NORMALIZERS:
        problems.append(f"--normalizer must be one of {', '.join(NORMALIZERS)}, got {config.normalizer!r}")
    if config.max_line_width < 1:
        problems.append(f"--max-line-width must be at least 1, got {config.max_line_width}")
    if config.max_line_count < 1:
        problems.append(f"--max-line-count must be at least 1, got {config.max_line_count}")
    if problems:
        raise InputError("; ".join(problems))
    if not config.language:
        return None
    code = normalize_language(config.language, what="--language")
    if config.engine.strip().lower() != "whisper" and not qwen_speaks(code):
        log.warning("%s is not among the speech languages Qwen3-Omni was trained on; transcribing anyway",
                    code)
    return code


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)

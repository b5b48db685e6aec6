"""The summarize task: transcript (or clip captions) -> map-reduce summary -> spoken summary as a WAV.

Passes (see `pipeline.tasks`): the transcript's regions, then the map-reduce
summary rounds as text rounds, all in the shared engine queue; then, after the
shard's Thinker work and with the Thinker closed, the speech pass speaks every
summary, a batch at a time, and each row is written as its WAV is. A row's text
is kept (staged) the moment its summary is done, so an interrupted speech pass
never costs Thinker work again. With `speak=False` no speech engine is built
and the audio columns stay null.

What is summarized: the transcript, cut and prompted exactly as `transcribe`
does (the manifest's `language` is the speech's language). A file without
speech (a silent or music-only video, a sound recording) is captioned clip by
clip instead, as `caption` does, and the captions are summarized; its
`transcript` column is then null. `--language` is the language the summary is
written and spoken in (default: the transcript's own).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from omnibatch.config import RunConfig
from omnibatch.errors import InputError, MediaError
from omnibatch.output.tables import FileRow, SummarizeRow
from omnibatch.pipeline.tasks import FileResult, RegionRequest
from omnibatch.records import Chunk, Generation, MediaInfo, MediaItem, Request
from omnibatch.summaries import SummaryStep

log = logging.getLogger(__name__)

Source = Literal["transcript", "captions"]
MIN_PIECE_CHARS = 200  # below this a summary prompt holds a sentence or two: map-reduce would not end soon
# Engine options the transformers speech engine shares with the transformers Thinker engine.
SHARED_SPEECH_OPTIONS = ("device", "dtype", "num_threads")


@dataclass(frozen=True)
class CaptionClip(Chunk):
    """A region of a file without speech: described by a caption rather than transcribed."""


@dataclass
class SummarizeTask:
    config: RunConfig
    name: str = "summarize"
    row_type: ClassVar[type[FileRow]] = SummarizeRow
    hold_seconds: ClassVar[float] = 1800.0

    def __post_init__(self) -> None:
        check_summarize_config(self.config)

    # -- in decode workers -----------------------------------------------------------------

    def decode(self, item: MediaItem, info: MediaInfo) -> Iterator[RegionRequest]:
        """The transcript's chunks from one pass over the sound, exactly as `transcribe` cuts and
        prompts them; a file with no speech found is then captioned clip by clip (a second pass,
        for those files only)."""
        from omnibatch.pipeline.caption import CaptionTask
        from omnibatch.pipeline.speech_plan import speech_chunks
        from omnibatch.pipeline.transcribe import TranscribeTask

        count = 0
        if info.has_audio:
            # The ASR prompt names the speech's language (the manifest's), not the summary's.
            asr = TranscribeTask(dataclasses.replace(self.config, language=None))
            for chunk, audio in speech_chunks(item, info, self.config):
                count += 1
                yield RegionRequest(chunk, asr.asr_request(item, chunk, audio))
        if count:
            return
        if not info.has_audio and not info.has_video:
            raise MediaError(f"{item.path.name} has neither an audio nor a video stream: "
                             "there is nothing to summarize")
        if not info.duration_s > 0:
            raise MediaError(f"{item.path.name}: the file reports no duration, so there is nothing to "
                             "summarize")
        log.info("%s has no speech: summarizing captions of its clips instead", item.id)
        captions = CaptionTask(self.config, variant="instruct")
        yield from captions.clip_requests(item, info, vad=False, clip_type=CaptionClip)

    # -- in the main process ---------------------------------------------------------------

    def followup(self, item: MediaItem, info: MediaInfo, chunks: list[Chunk], generations: list[Generation],
                 rounds: list[list[Generation]]) -> list[Request]:
        from omnibatch.summaries import plan_round

        source, kind = source_text(chunks, generations, info.duration_s)
        step = plan_round(source, [[g.text for g in r] for r in rounds], self.config.summary_piece_chars)
        if step is None:
            return []
        language = self.config.language or item.language
        return [
            Request(id=f"{item.id}#summary{len(rounds)}.{k}",
                    prompt=step_prompt(step, k, max_words=self.config.max_words, language=language,
                                       source=kind),
                    max_new_tokens=token_cap(step, self.config.max_words))
            for k in range(len(step.inputs))
        ]

    def finish(self, base: FileRow, item: MediaItem, info: MediaInfo, chunks: list[Chunk],
               generations: list[Generation], rounds: list[list[Generation]]) -> FileResult:
        from omnibatch.summaries import speakable_text

        source, kind = source_text(chunks, generations, info.duration_s)
        row = SummarizeRow.extend(base, transcript=source if kind == "transcript" else None)
        if not rounds:
            what = "the transcript is empty" if kind == "transcript" else "the clip captions are empty"
            return FileResult(row=row, error=f"nothing to summarize: {what}")
        if len(rounds[-1]) != 1:
            return FileResult(row=row, error="the model's summaries of the file's parts were all empty")
        row.summary = speakable_text(rounds[-1][0].text, self.config.max_words)
        if not row.summary:
            return FileResult(row=row, error="the model wrote an empty summary")
        return FileResult(row=row)

    # -- the speech pass -------------------------------------------------------------------

    def speech_request(self, row: FileRow):
        if not self.config.speak or row.error or not getattr(row, "summary", None):
            return None
        from omnibatch.engine.base import SpeechRequest, check_speaker, speech_seconds_cap

        return SpeechRequest(id=row.id, text=row.summary, speaker=check_speaker(self.config.speaker),
                             max_seconds=speech_seconds_cap(row.summary))

    def build_speech(self):
        return build_speech(self.config)

    def speak(self, engine, requests: list) -> list:
        from omnibatch.pipeline.speech_stage import speak_batch

        return speak_batch(engine, requests, self.config.out_dir)

    def apply_speech(self, row: FileRow, spoken) -> None:
        if spoken.error is not None:
            row.fail("speech", spoken.error)
            return
        row.audio_path, row.audio_duration_s, row.sample_rate = spoken.audio_path, spoken.duration_s, \
            spoken.sample_rate


# -- helpers --------------------------------------------------------------------------------


def build_speech(config: RunConfig):
    """The speech engine that follows the Thinker engine: vllm -> vllm-omni on GPUs, else transformers."""
    from omnibatch.engine import build_speech_engine, choose_speech_engine

    name = choose_speech_engine(config.engine)
    options: dict[str, Any] = {"timeout_s": config.speech_timeout_s}
    if name == "transformers":
        options.update({k: v for k, v in config.engine_options.items() if k in SHARED_SPEECH_OPTIONS})
    return build_speech_engine(name, config.model, **options)


def check_summarize_config(config: RunConfig) -> None:
    if config.engine.strip().lower() == "whisper":
        raise InputError("the whisper engine only transcribes; summarize with --engine transformers or vllm")
    problems = []
    if config.max_words < 1:
        problems.append(f"--max-words must be at least 1, got {config.max_words}")
    if config.summary_piece_chars < MIN_PIECE_CHARS:
        problems.append(f"--piece-chars must be at least {MIN_PIECE_CHARS}, got {config.summary_piece_chars}")
    if not config.speech_timeout_s > 0:
        problems.append(f"--speech-timeout must be positive, got {config.speech_timeout_s}")
    if config.language:
        from omnibatch.prompts import language_name

        language_name(config.language)  # an unknown language is refused now, not per file
    if problems:
        raise InputError("; ".join(problems))
    from omnibatch.models.resolve import resolve_model

    spec = resolve_model(config.model)
    if spec.variant == "captioner":
        raise InputError(f"{spec.label} is the Captioner, which takes no text prompt and cannot summarize: "
                         "use an Instruct (or Thinking) checkpoint")
    if config.speak:
        from omnibatch.engine.base import check_speaker

        check_speaker(config.speaker)
        if not spec.has_talker:
            raise InputError(f"{spec.label} has no Talker, so it cannot speak the summaries: pass "
                             "--no-speak, or --model an Instruct checkpoint with audio output")


def source_text(chunks: list[Chunk], generations: list[Generation], duration_s: float) -> tuple[str, Source]:
    """What the summary is written from: the stitched transcript, or the clip captions with their times."""
    if chunks and all(isinstance(c, CaptionClip) for c in chunks):
        from omnibatch.pipeline.caption import clock

        lines = [f"[{clock(c.start_s)}-{clock(c.end_s)}] {g.text.strip()}"
                 for c, g in zip(chunks, generations) if g.text.strip()]
        return "\n".join(lines), "captions"
    from omnibatch.stitching import stitch

    return stitch(chunks, generations, duration_s=duration_s).text, "transcript"


def step_prompt(step: SummaryStep, index: int, *, max_words: int, language: str | None,
                source: Source) -> str:
    """The prompt of request `index` of a summary round."""
    from omnibatch.prompts import combine_summaries_prompt, partial_summary_prompt, summary_prompt

    text = step.inputs[index]
    if step.kind == "map":
        return partial_summary_prompt(text, index + 1, len(step.inputs), max_words=partial_words(max_words),
                                      language=language, source=source)
    if step.kind == "reduce":
        return combine_summaries_prompt(text, max_words=partial_words(max_words), final=False,
                                        language=language)
    if step.combines:
        return combine_summaries_prompt(text, max_words=max_words, final=True, language=language)
    return summary_prompt(text, max_words=max_words, language=language, source=source)


def partial_words(max_words: int) -> int:
    """Words per partial summary (map and reduce rounds): room for detail the final summary chooses from."""
    return max(2 * max_words, 30)


def token_cap(step: SummaryStep, max_words: int) -> int:
    """Generated tokens per summary request: two a word (long words, other scripts), plus slack."""
    words = max_words if step.kind == "final" else partial_words(max_words)
    return 2 * words + 32

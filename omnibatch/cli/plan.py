"""`omnibatch plan`: files, media hours, engine hours and an array size, before anything runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from omnibatch.cli import app
from omnibatch.cli.options import (
    EXIT_BAD_INPUT, EngineOpt, Inputs, Model, Verbose, Workers, job_config, parse_workers, setup_logging,
)
from omnibatch.config import TASKS
from omnibatch.errors import OmnibatchError


@app.command()
def plan(
    inputs: Inputs,
    task: Annotated[str, typer.Option(metavar="TASK", help=" | ".join(TASKS))] = "transcribe",
    engine: Annotated[str, typer.Option(help="The engine the run will use: vllm | transformers | whisper. "
                                        "Default: vllm with --gpu, else transformers.")] = "auto",
    model: Model = None,
    gpu: Annotated[Optional[str], typer.Option(metavar="KIND", help="GPU of each shard: h100 | h200 | a100 "
                                               "(built-in estimates), or cpu. Default: cpu, or what "
                                               "--calibrate finds.")] = None,
    shards: Annotated[int, typer.Option(min=1, help="Shards (Slurm array size) to estimate for.")] = 1,
    deadline: Annotated[Optional[float], typer.Option(metavar="HOURS", help="Suggest the fewest shards that "
                                                      "finish within this many hours.")] = None,
    calibrate: Annotated[bool, typer.Option("--calibrate", help="Measure instead of estimating: run a "
                                            "sample cut from several inputs through the engine and "
                                            "extrapolate.")] = False,
    sample_seconds: Annotated[float, typer.Option(help="Media seconds --calibrate cuts, from up to 6 files; "
                                                  "it runs a third, two thirds and all of them.")] = 180.0,
    calibrate_repeats: Annotated[int, typer.Option(min=1, help="How often --calibrate runs each size (the "
                                                   "median counts).")] = 3,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="The run's output folder, if known: "
                                                "durations are cached in its _run/durations.json.")] = None,
    workers: Workers = "auto",
    engine_option: EngineOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    verbose: Verbose = False,
) -> None:
    """Plan a run: files, media hours, probed durations, estimated engine hours, shards for a deadline,
    output size. Estimates are built in for H100, H200, A100 and the CPU engines; --calibrate measures."""
    from omnibatch.manifests import read_inputs
    from omnibatch.run.plan import format_plan, make_plan, probe_for_plan
    from omnibatch.run.progress import probing_bar
    from omnibatch.run.throughput import builtin_profile

    setup_logging(verbose)
    if task not in TASKS:
        raise typer.BadParameter(f"unknown task {task!r}; choose one of {', '.join(TASKS)}", param_hint="--task")
    try:
        items = read_inputs(inputs, exclude=[out] if out else []).items
        with probing_bar("probing durations") as progress:
            durations = probe_for_plan(items, out, progress)
        if calibrate:
            import tempfile

            from omnibatch.run.calibrate import calibrate as measure

            config = job_config(task, out=Path(tempfile.gettempdir()), shard="0/1", no_resume=False,
                                engine_option=engine_option, inputs=list(inputs), model=model, engine=engine,
                                workers=parse_workers(workers),
                                **({"formats": ["parquet", "srt", "vtt", "txt"]} if task == "transcribe" else {}))
            profile = measure(config, items, durations, sample_s=sample_seconds, repeats=calibrate_repeats)
        else:
            chosen = engine
            if chosen == "auto":
                chosen = "vllm" if gpu and gpu.lower() != "cpu" else "transformers"
            profile = builtin_profile(chosen, gpu, task)
        result = make_plan(durations, profile, shards=shards, deadline_hours=deadline)
    except ValueError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except OmnibatchError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    if as_json:
        print(json.dumps(result.as_dict(), indent=1))
    else:
        print(format_plan(result))
    sys.stdout.flush()

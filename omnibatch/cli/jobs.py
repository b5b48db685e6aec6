"""Scale-out commands: submit (Slurm job arrays), status, and the hidden run-shard that each task runs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from omnibatch.cli import app
from omnibatch.cli.options import (
    EXIT_BAD_INPUT,
    EXIT_RUN_FAILED,
    CapturedConfig,
    Out,
    Shard,
    Verbose,
    capturing,
    parse_shard,
    run_and_exit,
)
from omnibatch.config import TASKS, RunConfig
from omnibatch.errors import InputError, OmnibatchError


@app.command("run-shard", hidden=True)
def run_shard_command(
    config_path: Annotated[Path, typer.Argument(help="DIR/_run/config-<task>.json, as `submit` wrote it.")],
    shard: Shard = "0/1",
    verbose: Verbose = False,
) -> None:
    """Run one shard of a recorded run config: what each Slurm array task and --parallel worker runs."""
    try:
        config = RunConfig.from_json(config_path.read_text())
    except (OSError, ValueError, TypeError) as exc:
        typer.secho(f"error: cannot read the run config {config_path}: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    index, count = parse_shard(shard)
    run_and_exit(config.with_shard(index, count), verbose)


@app.command()
def status(
    out: Annotated[Path, typer.Argument(metavar="DIR", help="The run's output folder (--out).",
                                        show_default=False)],
    write: Annotated[bool, typer.Option("--write", help="Also write DIR/_run/summary.json.")] = False,
    max_failed: Annotated[int, typer.Option(help="Failed items to list.")] = 20,
    html: Annotated[Optional[Path], typer.Option("--html", metavar="FILE", help="Also write a report page: "
                                                 "shards, throughput over time, errors by cause, the "
                                                 "slowest files, with plots (one file, nothing "
                                                 "fetched).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the status and report as one JSON object "
                                          "instead of text.")] = False,
) -> None:
    """Show a run's progress: shards done/running/failed, items ok/failed, media hours, throughput.

    Exit code: 0 all shards done and every item ok; 1 all done, some items failed; 3 some shard not done.
    """
    from omnibatch.run.status import format_status, read_status, write_summary

    try:
        if html is not None or as_json:
            from omnibatch.run.html_report import collect, report_json, write_html

            report = collect(out)
            run = report.status
        else:
            run = read_status(out)
    except OmnibatchError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    if as_json:
        print(report_json(report))
    else:
        print(format_status(run, max_failed=max_failed))
    if html is not None:
        try:
            write_html(report, html)
        except OSError as exc:
            typer.secho(f"error: cannot write {html}: {exc.strerror or exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(EXIT_BAD_INPUT) from None
        print(f"report written to {html}", file=sys.stderr)
    if write:
        print(f"summary written to {write_summary(run)}")
    raise typer.Exit(run.exit_code())


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def submit(
    ctx: typer.Context,
    task: Annotated[str, typer.Argument(metavar="TASK", help=" | ".join(TASKS), show_default=False)],
    inputs_and_options: Annotated[
        Optional[list[str]],
        typer.Argument(metavar="INPUT... [TASK OPTIONS]", show_default=False,
                       help="Inputs, then any option of `omnibatch TASK` (--model, --engine, --language, "
                       "...)."),
    ] = None,
    out: Out = ...,  # type: ignore[assignment]
    array: Annotated[int, typer.Option("--array", help="Number of shards N: array tasks 0..N-1, one shard "
                                       "each. Fixed for the run folder.")] = ...,  # type: ignore[assignment]
    partition: Annotated[Optional[str], typer.Option(help="Slurm partition.")] = None,
    gpus_per_task: Annotated[Optional[int], typer.Option(help="GPUs per shard.")] = None,
    cpus_per_task: Annotated[Optional[int], typer.Option(help="CPU cores per shard.")] = None,
    mem: Annotated[Optional[str], typer.Option(help="Memory per shard, e.g. 64G.")] = None,
    time: Annotated[Optional[str], typer.Option("--time", help="Time limit per attempt, e.g. 4:00:00; a "
                                                "shard near it requeues itself and resumes.")] = None,
    account: Annotated[Optional[str], typer.Option(help="Slurm account.")] = None,
    qos: Annotated[Optional[str], typer.Option(help="Slurm QOS.")] = None,
    max_parallel: Annotated[Optional[int], typer.Option(help="Run at most K shards at once (--array=...%K).")]
    = None,
    signal_margin: Annotated[int, typer.Option(help="Seconds before the time limit at which a shard is "
                                               "told to stop (it stops within seconds).")] = 300,
    job_name: Annotated[Optional[str], typer.Option(help="Slurm job name. Default: omnibatch-TASK.")] = None,
    sbatch_arg: Annotated[Optional[list[str]], typer.Option(
        "--sbatch-arg", metavar="OPTION", help="Any other sbatch option, repeatable, e.g. --sbatch-arg=--constraint=a100.")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Write the config and the sbatch script, print "
                                          "the script, submit nothing.")] = False,
) -> None:
    """Run a job as a Slurm job array over N shards, plus a summary step once every shard has ended.

    Submitting again to the same --out submits only the unfinished shards. Prints the array job id.
    """
    from omnibatch.run.slurm_script import SlurmOptions
    from omnibatch.run.submit import submit_run

    config = _task_config(task, [*(inputs_and_options or []), *ctx.args], out)
    try:
        options = SlurmOptions(num_shards=array, partition=partition, gpus_per_task=gpus_per_task,
                               cpus_per_task=cpus_per_task, mem=mem, time=time, account=account, qos=qos,
                               max_parallel=max_parallel, signal_margin_s=signal_margin, job_name=job_name,
                               extra=list(sbatch_arg or []))
        done = submit_run(config, options, dry_run=dry_run)
    except OmnibatchError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(EXIT_BAD_INPUT if isinstance(exc, InputError) else EXIT_RUN_FAILED) from None
    if not done.shards:
        print(f"all {array} shards of {config.out} are done; nothing to submit "
              f"(omnibatch status {config.out})", file=sys.stderr)
        return
    if dry_run:
        assert done.script is not None
        print(done.script.read_text(), end="")
        print(f"(dry run: script written to {done.script}, nothing submitted)", file=sys.stderr)
        return
    print(done.array_job)
    print(f"submitted {task} shards {len(done.shards)} of {array} as Slurm array job {done.array_job} "
          f"({done.script}); summary job {done.summary_job} runs `omnibatch status {config.out} --write` "
          "once they end", file=sys.stderr)


def _task_config(task: str, args: list[str], out: Path) -> RunConfig:
    """Parse `args` with the task's own command, so submit takes exactly the options the local run takes."""
    from typer.main import get_command

    if task not in TASKS:
        raise typer.BadParameter(f"unknown task {task!r}; choose one of {', '.join(TASKS)}",
                                 param_hint="TASK")
    if any(a == "--shard" or a.startswith("--shard=") for a in args):
        raise typer.BadParameter("submit chooses each task's --shard itself; give the shard count with "
                                 "--array")
    group = get_command(app)
    command = group.commands.get(task) if hasattr(group, "commands") else None
    if command is None:
        raise typer.BadParameter(f"the {task} command is not available in this omnibatch", param_hint="TASK")
    captured = CapturedConfig()
    token = capturing.set(captured)
    try:
        code = command.main(args=[*args, "--out", str(out)], prog_name=f"omnibatch submit {task}",
                            standalone_mode=False)
    finally:
        capturing.reset(token)
    if captured.config is None:  # --help was shown, or the command refused its options
        raise typer.Exit(code if isinstance(code, int) else 0)
    return captured.config

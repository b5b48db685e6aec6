"""The `omnibatch` command line: a thin layer over the library, one module per command group.

Nothing heavy is imported here: torch, transformers and vllm load only when an
engine is built, so `omnibatch --help` answers at once.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="omnibatch",
    help="Batch transcripts, captions and spoken summaries of long audio and video with Qwen3-Omni.\n\n"
    "INPUT is a manifest (.jsonl, .jsonl.gz, .csv, .parquet), a folder (scanned recursively) or media files.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)



def main() -> None:
    import logging

    logging.raiseExceptions = False  # a log file on a full disk must not print tracebacks
    try:
        app()
    except Exception as exc:  # noqa: BLE001 - never a raw traceback: one line and the contract's exit code
        from omnibatch.cli.failures import exit_on_failure

        exit_on_failure(exc)


# The command modules register themselves on `app` (kept last: they import it).
from omnibatch.cli import tasks, demo, jobs  # noqa: E402, F401, I001

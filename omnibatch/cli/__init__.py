"""The `omnibatch` command line: a thin layer over the library, one module per command group.

Nothing heavy is imported here: torch, transformers and vllm load only when an
engine is built, so `omnibatch --help` answers at once.
"""

from __future__ import annotations

from typing import Annotated

import typer

from omnibatch.cli.help import HumanGroup

app = typer.Typer(
    cls=HumanGroup,
    name="omnibatch",
    help="Batch transcripts, captions and spoken summaries of long audio and video with Qwen3-Omni.\n\n"
    "INPUT is a manifest (.jsonl, .jsonl.gz, .csv, .parquet), a folder (scanned recursively) or media files.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)


def _show_version(value: bool) -> None:
    if value:
        from omnibatch import __version__

        print(f"omnibatch {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_show_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    pass  # the group's help is the Typer's above; this callback only adds --version


def main() -> None:
    import logging

    logging.raiseExceptions = False  # a log file on a full disk must not print tracebacks
    import sys

    from omnibatch.cli.help import ClickException, refusal_line

    try:
        # Not standalone: a refused option or argument is reported here, as one line.
        code = app(standalone_mode=False)
    except ClickException as exc:
        from omnibatch.text_safety import printable

        print(printable(refusal_line(exc), keep_newlines=True), file=sys.stderr)
        sys.exit(exc.exit_code)
    except typer.Abort:  # Ctrl-C outside a run (a run handles it itself: its finished files are written)
        print("aborted: run the same command again to resume", file=sys.stderr)
        sys.exit(3)
    except Exception as exc:  # noqa: BLE001 - never a raw traceback: one line and the contract's exit code
        from omnibatch.cli.failures import exit_on_failure

        exit_on_failure(exc)
    sys.exit(code if isinstance(code, int) else 0)


# The command modules register themselves on `app` (kept last: they import it).
from omnibatch.cli import tasks, demo, jobs, plan  # noqa: E402, F401, I001

"""`omnibatch demo`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from omnibatch.cli import app
from omnibatch.cli.options import EXIT_RUN_FAILED, Verbose, setup_logging
from omnibatch.errors import OmnibatchError


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("demo-out"),
    media: Annotated[Optional[Path], typer.Option(
        metavar="DIR", help="Generate the example media here (with ffmpeg and espeak-ng) and use it. "
        "Default: the bundled examples/ folder of a checkout, else OUT/media.", show_default=False)] = None,
    verbose: Verbose = False,
) -> None:
    """Run the three jobs on example media with the embedded tiny model, then transcribe it with the bundled
    Whisper model: real words beside the tiny model's meaningless ones, and where the outputs went."""
    from omnibatch.demo import run_demo

    setup_logging(verbose)
    try:
        code = run_demo(out, media)
    except OmnibatchError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(EXIT_RUN_FAILED)
    raise typer.Exit(code)

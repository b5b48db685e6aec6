"""`omnibatch demo`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from omnibatch.cli import app
from omnibatch.cli.options import EXIT_RUN_FAILED, Verbose, setup_logging
from omnibatch.errors import OmnibatchError


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("demo-out"),
    media: Annotated[Path, typer.Option(help="Where to generate the example media (the manifests in "
                                        "manifests/ point here).")] = Path("examples/media"),
    verbose: Verbose = False,
) -> None:
    """Run the jobs on generated example media with the embedded tiny model, and show where outputs went."""
    from omnibatch.demo import run_demo

    setup_logging(verbose)
    try:
        code = run_demo(out, media)
    except OmnibatchError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(EXIT_RUN_FAILED)
    raise typer.Exit(code)

"""CLI: `steerscope demo`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._app import Model, Out, Overwrite, Restart, app, console


@app.command()
def demo(
    model: Model = "default",
    out: Out = Path("runs/demo"),
    quick: Annotated[bool, typer.Option(help="a smoke run: every part at a tiny size")] = False,
    overwrite: Overwrite = False,
    restart: Restart = False,
) -> None:
    """The main job: depth, steering, method comparison and refusal direction, in one HTML report."""
    from ..demo import Demo, run_demo

    page = run_demo(Demo(model=model, out=out, quick=quick, overwrite=overwrite, restart=restart), console)
    console.print(f"report: [bold]{page.resolve()}[/bold]")

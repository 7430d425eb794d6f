"""CLI: `steerscope demo`."""

from __future__ import annotations

from pathlib import Path

import typer

from ._app import MODEL_HELP, app, console


@app.command()
def demo(
    model: str = typer.Argument("default", help=MODEL_HELP),
    out: Path = typer.Option(Path("runs/demo"), help="report folder"),  # noqa: B008
    quick: bool = typer.Option(False, help="a smoke run: every part at a tiny size"),
    overwrite: bool = typer.Option(True, help="replace the previous report once the new one is complete"),
) -> None:
    """The main job: depth, steering, method comparison and refusal direction, in one HTML report."""
    from ..core.models import ModelLoadError
    from ..demo import Demo, run_demo

    try:
        page = run_demo(Demo(model=model, out=out, quick=quick, overwrite=overwrite), console)
    except (ModelLoadError, ValueError, FileExistsError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    console.print(f"report: [bold]{page.resolve()}[/bold]")

"""CLI: `steerscope sweep CONFIG` and `steerscope report RESULTS`."""

from __future__ import annotations

from pathlib import Path

import typer

from ._app import app, console


@app.command()
def sweep(
    config: Path = typer.Argument(..., help="sweep configuration (.toml, .yaml or .yml)"),  # noqa: B008
    out: Path = typer.Option(None, help="results folder (default: runs/<config name>)"),  # noqa: B008
    report: bool = typer.Option(True, help="write the report (figures, tables, HTML) when the sweep finishes"),
    threads: int = typer.Option(0, help="torch CPU threads (0: torch's default); 1 is faster on a busy machine"),
) -> None:
    """Run a sweep from a config file; rerun the same command to resume an interrupted sweep."""
    from ..evaluate.store import SettingsMismatchError
    from ..sweep.config import ConfigError, load_config
    from ..sweep.runner import run_sweep

    try:
        parsed = load_config(config)
    except ConfigError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    out = out or Path("runs") / config.stem
    if threads:
        import torch

        torch.set_num_threads(threads)
    try:
        store = run_sweep(parsed, out, console=console)
    except (SettingsMismatchError, ValueError, FileNotFoundError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    console.print(f"results in {store}")
    if report:
        _report(out)


@app.command("report")
def report_command(
    results: Path = typer.Argument(..., help="a sweep's results folder (or its results.sqlite)"),  # noqa: B008
    out: Path = typer.Option(None, help="report folder (default: RESULTS/report)"),  # noqa: B008
    n_boot: int = typer.Option(1000, help="bootstrap replicates for every interval"),
) -> None:
    """Figures (sample complexity, effect vs fluency, layer sweep), CSV/JSON tables and an HTML page."""
    _report(results, out, n_boot)


def _report(results: Path, out: Path | None = None, n_boot: int = 1000) -> None:
    from ..sweep.report import sweep_report

    try:
        folder = sweep_report(results, out, n_boot)
    except FileNotFoundError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    console.print(f"report in {folder} (open {folder / 'index.html'})")

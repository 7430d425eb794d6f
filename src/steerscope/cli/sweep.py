"""CLI: `steerscope sweep CONFIG` and `steerscope report RESULTS`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._app import (
    CpusPerWorker,
    DeviceMap,
    GpusPerWorker,
    MaxMemory,
    Overwrite,
    RayAddress,
    RayWorkers,
    Restart,
    Threads,
    UseRay,
    app,
    console,
    ray_spec,
    set_threads,
)

NBoot = Annotated[int, typer.Option(help="bootstrap replicates for every interval")]


@app.command()
def sweep(
    config: Annotated[Path, typer.Argument(help="sweep configuration (.toml, .yaml or .yml)")],
    out: Annotated[Path | None, typer.Option(help="results folder (default: runs/<config name>)")] = None,
    report: Annotated[bool, typer.Option(help="write the report (figures, tables, HTML) when the sweep finishes")] = (
        True
    ),
    overwrite: Overwrite = False,
    restart: Restart = False,
    threads: Threads = 0,
    use_ray: UseRay = False,
    address: RayAddress = None,
    workers: RayWorkers = None,
    gpus_per_worker: GpusPerWorker = None,
    cpus_per_worker: CpusPerWorker = None,
    device_map: DeviceMap = "",
    max_memory: MaxMemory = "",
) -> None:
    """Run a sweep from a config file; rerun the same command to resume an interrupted sweep.

    With --ray (or a [ray] table in the config) the cells run on Ray workers, each loading a model once; the
    Ray options override the table. --device-map / --max-memory override the config's device_map / max_memory.
    """
    from dataclasses import replace

    from ..core.loading import parse_device_map, parse_max_memory
    from ..sweep.config import load_config
    from ..sweep.runner import run_sweep

    ray_spec(use_ray, address, workers, gpus_per_worker, cpus_per_worker)  # the Ray options, before the config
    parsed = load_config(config)
    parse_device_map(device_map)  # refused here, before any work
    parse_max_memory(max_memory)
    placement = {"device_map": device_map, "max_memory": max_memory}
    parsed = replace(parsed, **{k: v for k, v in placement.items() if v})
    parsed = replace(parsed, ray=ray_spec(use_ray, address, workers, gpus_per_worker, cpus_per_worker, parsed.ray))
    out = out or Path("runs") / config.stem
    set_threads(threads)
    store = run_sweep(parsed, out, console=console, overwrite=overwrite, restart=restart)
    console.print(f"results in {store}")
    if report:
        _report(out)


@app.command("report")
def report_command(
    results: Annotated[Path, typer.Argument(help="a sweep's results folder (or its results.sqlite)")],
    out: Annotated[Path | None, typer.Option(help="report folder (default: RESULTS/report)")] = None,
    n_boot: NBoot = 1000,
    overwrite: Annotated[
        bool, typer.Option(help="replace an existing --out that is not an earlier report (once the new one is done)")
    ] = False,
) -> None:
    """Figures (sample complexity, effect vs fluency, layer sweep), CSV/JSON tables and an HTML page.

    The results are only read. The report is written in OUT.partial and swapped in when complete; an earlier
    report in OUT is replaced on every run (it is derived output), any other existing OUT needs --overwrite.
    """
    from ..core.validate import whole

    _report(results, out, whole(n_boot, "--n-boot", 1), overwrite)


def _report(results: Path, out: Path | None = None, n_boot: int = 1000, overwrite: bool = False) -> None:
    from ..sweep.report import sweep_report

    folder = sweep_report(results, out, n_boot, overwrite)
    console.print(f"report in {folder} (open {folder / 'index.html'})")


@app.command("search")
def search_command(
    config: Annotated[Path, typer.Argument(help="sweep configuration with a 'search' table (.toml, .yaml or .yml)")],
    out: Annotated[Path | None, typer.Option(help="run folder (default: runs/<config name>-search)")] = None,
    trials: Annotated[
        int | None, typer.Option(help="settings to evaluate (overrides the search table's trials; 0: grid size)")
    ] = None,
    overwrite: Overwrite = False,
    restart: Restart = False,
    threads: Threads = 0,
) -> None:
    """Pareto search (Optuna TPE) of site x coefficient against a side effect on validation, compared with the
    config's grid on equal budget, the chosen point confirmed on test; rerun the same command to resume."""
    from dataclasses import replace

    from ..sweep.config import SearchSpec, load_config
    from ..sweep.search import run_search

    if trials is not None and trials < 0:
        raise ValueError(f"--trials must be >= 0 (0: as many as the grid has settings), got {trials}")
    parsed = load_config(config)
    spec = parsed.search or SearchSpec()
    if trials is not None:
        spec = replace(spec, trials=trials)
    set_threads(threads)
    folder = run_search(replace(parsed, search=spec), out or Path("runs") / f"{config.stem}-search", console=console,
                        overwrite=overwrite, restart=restart)  # fmt: skip
    console.print(f"search in {folder} (open {folder / 'index.html'})")

"""CLI: `steerscope norms` and `steerscope horizon`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._app import MODEL_HELP, app, console


def _text_spec(text: str, n: int, seq_len: int, batch_size: int, seed: int):
    from ..depth.run import TextSpec

    return TextSpec(source=text, n=n, seq_len=seq_len, batch_size=batch_size, seed=seed)


def _fit_range(value: str) -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in value.split(","))
    except ValueError as exc:
        raise typer.BadParameter(f"expected two fractions like 0.2,0.8, got {value!r}") from exc
    return lo, hi


TEXT_HELP = "'wikipedia' (built-in), or a .txt (documents split at blank lines), .jsonl ('text') or .json file"

# Options shared by `norms` and `horizon`.
Models = Annotated[list[str] | None, typer.Argument(help=MODEL_HELP + "; several allowed")]
Overwrite = Annotated[bool, typer.Option(help="replace an existing output folder once the new one is complete")]
Text = Annotated[str, typer.Option(help=TEXT_HELP)]
N = Annotated[int, typer.Option(help="number of sequences")]
SeqLen = Annotated[int, typer.Option(help="tokens per sequence")]
BatchSize = Annotated[int, typer.Option(help="sequences per forward pass")]
Seed = Annotated[int, typer.Option(help="seed of the document selection")]
FitRange = Annotated[str, typer.Option(help="fraction of layer boundaries the growth fit covers")]
NBoot = Annotated[int, typer.Option(help="bootstrap resamples over sequences")]
Dtype = Annotated[str, typer.Option(help="float32, bfloat16, float16 or auto")]
Device = Annotated[str, typer.Option(help="cpu, cuda, ...")]


def _depth_run(models, out, overwrite, text, n, seq_len, batch_size, seed, fit_range, n_boot, dtype, device):
    from ..depth.run import DepthRun

    return DepthRun(
        models=models or ["default"],
        out=out,
        text=_text_spec(text, n, seq_len, batch_size, seed),
        fit_range=_fit_range(fit_range),
        n_boot=n_boot,
        overwrite=overwrite,
        dtype=dtype,
        device=device,
    )


def _run_depth(fn, title: str, *args, **kwargs) -> None:
    from ..core.models import ModelLoadError
    from ..depth.run import print_summary

    try:
        folder, rows = fn(*args, console=console, **kwargs)
    except (FileExistsError, FileNotFoundError, ValueError, ModelLoadError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    print_summary(rows, console, title)
    console.print(f"results: {folder}  (open {folder / 'index.html'})")


@app.command()
def norms(
    models: Models = None,
    out: Path = typer.Option(Path("runs/norms"), help="output folder (must not exist unless --overwrite)"),  # noqa: B008
    overwrite: Overwrite = False,
    text: Text = "wikipedia",
    n: N = 64,
    seq_len: SeqLen = 128,
    batch_size: BatchSize = 8,
    seed: Seed = 0,
    fit_range: FitRange = "0.2,0.8",
    n_boot: NBoot = 1000,
    dtype: Dtype = "float32",
    device: Device = "cpu",
) -> None:
    """Residual norm growth per site, raw and mean-centred, with the fitted per-layer growth rate."""
    from ..depth.run import run_norms

    run = _depth_run(models, out, overwrite, text, n, seq_len, batch_size, seed, fit_range, n_boot, dtype, device)
    _run_depth(run_norms, "residual norm growth", run)


@app.command()
def horizon(
    models: Models = None,
    out: Path = typer.Option(Path("runs/horizon"), help="output folder (must not exist unless --overwrite)"),  # noqa: B008
    overwrite: Overwrite = False,
    ks: str = typer.Option("", help="horizons to sweep, e.g. 1,2,4,8 (default: every k = 1..L)"),
    source: str = typer.Option("clean", help="clean: windows of clean outputs; propagated: errors compound"),
    keep_embedding: bool = typer.Option(False, help="keep the embedding in every truncated stream"),
    fill: str = typer.Option("zero", help="zero, or mean: out-of-window outputs replaced by their data mean"),
    enforce_from: int = typer.Option(-1, help="enforce the horizon only at layers >= K for every k (-1: K = k)"),
    readout_only: bool = typer.Option(False, help="truncate only the residual the final norm reads"),
    position0: str = typer.Option("patch", help="patch: position 0 is truncated too; keep: left whole"),
    max_delta_ce: float = typer.Option(0.1, help="k* threshold on |delta CE| (nats)"),
    max_kl: float = typer.Option(0.1, help="k* threshold on KL(clean || patched)"),
    text: Text = "wikipedia",
    n: N = 64,
    seq_len: SeqLen = 128,
    batch_size: BatchSize = 8,
    seed: Seed = 0,
    fit_range: FitRange = "0.2,0.8",
    n_boot: NBoot = 1000,
    dtype: Dtype = "float32",
    device: Device = "cpu",
) -> None:
    """The effective layer horizon: delta CE, KL and top-1 agreement against k, and k* per threshold."""
    from ..depth.horizon import HorizonVariant
    from ..depth.run import run_horizon

    try:
        variant = HorizonVariant(
            source=source,
            keep_embedding=keep_embedding,
            fill=fill,
            enforce_from=None if enforce_from < 0 else enforce_from,
            readout_only=readout_only,
            position0=position0,
        )
        k_list = [int(k) for k in ks.split(",")] if ks else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    run = _depth_run(models, out, overwrite, text, n, seq_len, batch_size, seed, fit_range, n_boot, dtype, device)
    thresholds = {"delta_ce": max_delta_ce, "kl": max_kl}
    _run_depth(run_horizon, "effective layer horizon", run, ks=k_list, variant=variant, thresholds=thresholds)

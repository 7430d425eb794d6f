"""CLI: `steerscope lens` (logit and tuned lens) and `steerscope depth` (every depth instrument on one page)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._app import (
    BatchSize,
    CpusPerWorker,
    Device,
    DeviceMap,
    Dtype,
    GpusPerWorker,
    MaxMemory,
    Out,
    Overwrite,
    RayAddress,
    RayWorkers,
    Restart,
    TrustRemoteCode,
    UseRay,
    app,
    console,
    ray_spec,
)
from .depth import FitRange, Models, N, NBoot, Seed, SeqLen, Text, _depth_run, _ks

Tuned = Annotated[bool, typer.Option("--tuned", help="also train a tuned lens (on other documents of --text)")]
TunedLensFile = Annotated[str, typer.Option(help="evaluate this saved tuned lens (.safetensors) instead of training")]
TunedSteps = Annotated[int, typer.Option(help="tuned-lens training steps (one batch each)")]
TunedN = Annotated[int, typer.Option(help="tuned-lens training sequences (documents not in the evaluation text)")]
TunedLr = Annotated[float, typer.Option(help="tuned-lens Adam learning rate")]


def _plan(instruments: str, tuned: bool, tuned_lens: str, tuned_steps: int, tuned_n: int, tuned_lr: float, **extra):
    from ..depth.instruments import InstrumentPlan, parse_instruments

    chosen = list(parse_instruments(instruments))
    if tuned or tuned_lens:
        chosen.append("tuned")
    return InstrumentPlan(
        instruments=parse_instruments(",".join(chosen)),
        tuned_lens=tuned_lens,
        tuned_steps=tuned_steps,
        tuned_n=tuned_n,
        tuned_lr=tuned_lr,
        **extra,
    )


def _go(run, plan, use_ray, address, workers, gpus_per_worker, cpus_per_worker) -> None:
    from ..depth.instruments import print_instruments, run_instruments

    cluster = ray_spec(use_ray, address, workers, gpus_per_worker, cpus_per_worker)
    folder, rows = run_instruments(run, plan, console=console, cluster=cluster)
    print_instruments(rows, console)
    console.print(f"results: {folder}  (open {folder / 'index.html'})")


@app.command()
def lens(
    models: Models = None,
    out: Out = Path("runs/lens"),
    overwrite: Overwrite = False,
    restart: Restart = False,
    tuned: Tuned = False,
    tuned_lens: TunedLensFile = "",
    tuned_steps: TunedSteps = 100,
    tuned_n: TunedN = 32,
    tuned_lr: TunedLr = 1e-3,
    text: Text = "wikipedia",
    n: N = 64,
    seq_len: SeqLen = 128,
    batch_size: BatchSize = 8,
    seed: Seed = 0,
    n_boot: NBoot = 1000,
    dtype: Dtype = "float32",
    device: Device = "cpu",
    trust_remote_code: TrustRemoteCode = False,
    device_map: DeviceMap = "",
    max_memory: MaxMemory = "",
    use_ray: UseRay = False,
    address: RayAddress = None,
    workers: RayWorkers = None,
    gpus_per_worker: GpusPerWorker = None,
    cpus_per_worker: CpusPerWorker = None,
) -> None:
    """The logit lens at every resid_post.l against the model: KL(final || lens), top-1, top-5 overlap, CE.

    --tuned also trains a tuned lens (one affine translator per layer) and reads it the same way.
    --ray: one Ray task per model, the same folder.
    """
    plan = _plan("lens", tuned, tuned_lens, tuned_steps, tuned_n, tuned_lr)
    run = _depth_run(
        models, out, overwrite, restart, text, n, seq_len, batch_size, seed, "0.2,0.8", n_boot, dtype, device,
        trust_remote_code, device_map=device_map, max_memory=max_memory,
    )  # fmt: skip
    _go(run, plan, use_ray, address, workers, gpus_per_worker, cpus_per_worker)


@app.command()
def depth(
    models: Models = None,
    out: Out = Path("runs/depth"),
    overwrite: Overwrite = False,
    restart: Restart = False,
    instruments: Annotated[
        str,
        typer.Option(help="comma-separated from lens, tuned, contributions, skipping, norms, horizon, or all"),
    ] = "lens,contributions,skipping,norms,horizon",
    tuned: Tuned = False,
    tuned_lens: TunedLensFile = "",
    tuned_steps: TunedSteps = 100,
    tuned_n: TunedN = 32,
    tuned_lr: TunedLr = 1e-3,
    no_swaps: Annotated[bool, typer.Option("--no-swaps", help="skip layers only; do not swap adjacent pairs")] = False,
    ks: Annotated[str, typer.Option(help="horizons to sweep, e.g. 1,2,4,8 (default: every k = 1..L)")] = "",
    max_delta_ce: Annotated[float, typer.Option(help="k* threshold on |delta CE| (nats)")] = 0.1,
    max_kl: Annotated[float, typer.Option(help="k* threshold on KL(clean || patched)")] = 0.1,
    text: Text = "wikipedia",
    n: N = 64,
    seq_len: SeqLen = 128,
    batch_size: BatchSize = 8,
    seed: Seed = 0,
    fit_range: FitRange = "0.2,0.8",
    n_boot: NBoot = 1000,
    dtype: Dtype = "float32",
    device: Device = "cpu",
    trust_remote_code: TrustRemoteCode = False,
    device_map: DeviceMap = "",
    max_memory: MaxMemory = "",
    use_ray: UseRay = False,
    address: RayAddress = None,
    workers: RayWorkers = None,
    gpus_per_worker: GpusPerWorker = None,
    cpus_per_worker: CpusPerWorker = None,
) -> None:
    """Depth read with every instrument on one page: lenses, sublayer contributions, layer skipping and swapping
    with the skip matrix, norm growth, the horizon, and Hu et al.'s three effective depths next to k*.

    --ray: one Ray task per model, the same folder.
    """
    from ..core.validate import finite

    finite(max_delta_ce, "--max-delta-ce", 0.0)  # thresholds first, before any folder or model
    finite(max_kl, "--max-kl", 0.0)
    plan = _plan(
        instruments, tuned, tuned_lens, tuned_steps, tuned_n, tuned_lr,
        swaps=not no_swaps, horizon_ks=_ks(ks), thresholds={"delta_ce": max_delta_ce, "kl": max_kl},
    )  # fmt: skip
    run = _depth_run(
        models, out, overwrite, restart, text, n, seq_len, batch_size, seed, fit_range, n_boot, dtype, device,
        trust_remote_code, device_map=device_map, max_memory=max_memory,
    )  # fmt: skip
    _go(run, plan, use_ray, address, workers, gpus_per_worker, cpus_per_worker)

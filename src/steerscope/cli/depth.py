"""CLI: `steerscope norms` and `steerscope horizon`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._app import (
    MODEL_HELP,
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

TEXT_HELP = "'wikipedia' (built-in), or a .txt (documents split at blank lines), .jsonl ('text') or .json file"

# Options shared by `norms` and `horizon`.
Models = Annotated[list[str] | None, typer.Argument(help=MODEL_HELP + "; several allowed")]
Text = Annotated[str, typer.Option(help=TEXT_HELP)]
N = Annotated[int, typer.Option(help="number of sequences")]
SeqLen = Annotated[int, typer.Option(help="tokens per sequence")]
Seed = Annotated[int, typer.Option(help="seed of the document selection")]
FitRange = Annotated[str, typer.Option(help="fraction of layer boundaries the growth fit covers, e.g. 0.2,0.8")]
NBoot = Annotated[int, typer.Option(help="bootstrap resamples over sequences")]


def _fit_range(value: str) -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in value.split(","))
    except ValueError:
        raise ValueError(f"--fit-range expects two fractions like 0.2,0.8, got {value!r}") from None
    return lo, hi


def _ks(value: str) -> list[int] | None:
    try:
        return [int(k) for k in value.split(",")] if value else None
    except ValueError:
        raise ValueError(f"--ks expects whole numbers separated by commas, like 1,2,4,8, got {value!r}") from None


def _depth_run(
    models,
    out,
    overwrite,
    restart,
    text,
    n,
    seq_len,
    batch_size,
    seed,
    fit_range,
    n_boot,
    dtype,
    device,
    trust=False,
    **placement,
):
    from ..depth.run import DepthRun, TextSpec

    return DepthRun(
        models=models or ["default"],
        out=out,
        text=TextSpec(source=text, n=n, seq_len=seq_len, batch_size=batch_size, seed=seed),
        fit_range=_fit_range(fit_range),
        n_boot=n_boot,
        overwrite=overwrite,
        restart=restart,
        dtype=dtype,
        device=device,
        trust_remote_code=trust,
        **placement,
    )


def _show(folder: Path, rows, title: str) -> None:
    from ..depth.run import print_summary

    print_summary(rows, console, title, folder)
    console.print(f"results: {folder}  (open {folder / 'index.html'})")


@app.command()
def norms(
    models: Models = None,
    out: Out = Path("runs/norms"),
    overwrite: Overwrite = False,
    restart: Restart = False,
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
    """Residual norm growth per site, raw and mean-centred, with the fitted per-layer growth rate.

    --ray: one Ray task per model (each asks for --gpus-per-worker / --cpus-per-worker), the same folder.
    """
    from ..depth.run import run_norms

    ray_spec(use_ray, address, workers, gpus_per_worker, cpus_per_worker)  # numbers first, before any folder
    run = _depth_run(
        models,
        out,
        overwrite,
        restart,
        text,
        n,
        seq_len,
        batch_size,
        seed,
        fit_range,
        n_boot,
        dtype,
        device,
        trust_remote_code,
        device_map=device_map,
        max_memory=max_memory,
    )
    cluster = ray_spec(use_ray, address, workers, gpus_per_worker, cpus_per_worker)
    folder, rows = run_norms(run, console=console, cluster=cluster)
    _show(folder, rows, "residual norm growth")


@app.command()
def horizon(
    models: Models = None,
    out: Out = Path("runs/horizon"),
    overwrite: Overwrite = False,
    restart: Restart = False,
    ks: Annotated[str, typer.Option(help="horizons to sweep, e.g. 1,2,4,8 (default: every k = 1..L)")] = "",
    source: Annotated[str, typer.Option(help="clean: windows of clean outputs; propagated: errors compound")] = (
        "clean"
    ),
    keep_embedding: Annotated[bool, typer.Option(help="keep the embedding in every truncated stream")] = False,
    fill: Annotated[str, typer.Option(help="zero, or mean: out-of-window outputs replaced by their data mean")] = (
        "zero"
    ),
    enforce_from: Annotated[
        int, typer.Option(help="enforce the horizon only at layers >= K for every k (-1: K = k)")
    ] = -1,
    readout_only: Annotated[bool, typer.Option(help="truncate only the residual the final norm reads")] = False,
    position0: Annotated[str, typer.Option(help="patch: position 0 is truncated too; keep: left whole")] = "patch",
    variants: Annotated[
        str,
        typer.Option(
            help="several variants side by side: comma-separated from clean, propagated, mean, embedding, "
            "readout, enforce (at layers >= --enforce-from, default 0), or all; replaces --source/--fill/"
            "--keep-embedding/--readout-only"
        ),
    ] = "",
    tasks: Annotated[str, typer.Option(help="capability horizons: induction, cloze, or all (default: none)")] = "",
    task_n: Annotated[int, typer.Option(help="items per capability task")] = 64,
    task_tolerance: Annotated[
        float, typer.Option(help="capability k*: the smallest k within this much accuracy of the clean model")
    ] = 0.05,
    profile_ks: Annotated[
        str,
        typer.Option(
            help="per-layer profile (each layer truncated alone) over these windows: coarse (1,2,4,...,L), all, "
            "or e.g. 1,2,4,8 (default: no profile)"
        ),
    ] = "",
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
    """The effective layer horizon: delta CE, KL and top-1 agreement against k, and k* per threshold.

    --ray: one Ray task per model (each asks for --gpus-per-worker / --cpus-per-worker), the same folder.
    """
    from ..core.validate import finite
    from ..depth.capability import parse_tasks
    from ..depth.horizon import HorizonVariant, named_variant, parse_variants, variant_name
    from ..depth.run import HorizonPlan, run_horizon

    finite(max_delta_ce, "--max-delta-ce", 0.0)  # thresholds first, before any folder or model
    finite(max_kl, "--max-kl", 0.0)
    ray_spec(use_ray, address, workers, gpus_per_worker, cpus_per_worker)
    if variants:
        if source != "clean" or keep_embedding or fill != "zero" or readout_only:
            raise ValueError("--variants names each variant; drop --source, --fill, --keep-embedding, --readout-only")
        chosen = {name: named_variant(name, max(enforce_from, 0), position0) for name in parse_variants(variants)}
    else:
        one = HorizonVariant(
            source=source,
            keep_embedding=keep_embedding,
            fill=fill,
            enforce_from=None if enforce_from < 0 else enforce_from,
            readout_only=readout_only,
            position0=position0,
        )
        chosen = {variant_name(one): one}
    plan = HorizonPlan(
        ks=_ks(ks),
        variants=chosen,
        thresholds={"delta_ce": max_delta_ce, "kl": max_kl},
        tasks=tuple(parse_tasks(tasks)),
        task_n=task_n,
        task_tolerance=task_tolerance,
        profile_ks=profile_ks or None,
    )
    run = _depth_run(
        models,
        out,
        overwrite,
        restart,
        text,
        n,
        seq_len,
        batch_size,
        seed,
        fit_range,
        n_boot,
        dtype,
        device,
        trust_remote_code,
        device_map=device_map,
        max_memory=max_memory,
    )
    cluster = ray_spec(use_ray, address, workers, gpus_per_worker, cpus_per_worker)
    folder, rows = run_horizon(run, console=console, plan=plan, cluster=cluster)
    _show(folder, rows, "effective layer horizon")

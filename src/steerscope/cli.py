"""Command-line interface: a thin layer over the Python API."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Activation engineering and depth analysis.")
console = Console()

MODEL_HELP = "'default' (SmolLM2-135M-Instruct), a Hugging Face id, a local model folder or a .gguf file"


def _load(model: str, dtype: str, device: str):
    from .core.models import ModelLoadError, load_model

    start = time.perf_counter()
    with console.status(f"loading {model} ..."):
        try:
            lm = load_model(model, dtype=dtype, device=device)
        except (ModelLoadError, ValueError) as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from exc
    console.print(f"loaded [bold]{lm.name}[/bold] in {time.perf_counter() - start:.1f}s from {lm.source}")
    return lm


@app.command()
def info(
    model: str = typer.Argument("default", help=MODEL_HELP),
    dtype: str = typer.Option("float32", help="float32, bfloat16, float16 or auto"),
    device: str = typer.Option("cpu"),
) -> None:
    """Print a model's family, size and site names."""
    lm = _load(model, dtype, device)
    table = Table(show_header=False)
    for key, value in [
        ("family", lm.adapter.describe()),
        ("layers", lm.n_layers),
        ("d_model", lm.d_model),
        ("parameters", f"{lm.n_params():,}"),
        ("dtype", str(lm.dtype).removeprefix("torch.")),
        ("fingerprint", lm.fingerprint()),
    ]:
        table.add_row(key, str(value))
    console.print(table)
    names = lm.site_names()
    per_layer = [n.rsplit(".", 1)[0] for n in names if n.endswith(".0")]
    console.print(f"sites ({len(names)}): embed, {{{', '.join(per_layer)}}}.{{0..{lm.n_layers - 1}}}, final")


@app.command()
def steer(
    model: str = typer.Argument("default", help=MODEL_HELP),
    site: str = typer.Option("", help="where to add the vector (default: resid_pre at a third of the depth)"),
    coefficient: float = typer.Option(4.0, help="multiplier of the vector; the negative is shown too"),
    pairs: str = typer.Option("sentiment", help="built-in contrast pair set"),
    prompt: list[str] = typer.Option(  # noqa: B008
        ["I went to the park today and", "My opinion of the new restaurant is that"], help="prompt(s) to complete"
    ),
    max_new_tokens: int = typer.Option(30),
    dtype: str = typer.Option("float32"),
    device: str = typer.Option("cpu"),
) -> None:
    """Find a mean-difference vector from built-in contrast pairs and show steered next to unsteered text."""
    from .core.generate import generate_text
    from .steering.methods import mean_diff
    from .steering.pairs import starter_pairs

    lm = _load(model, dtype, device)
    site = site or f"resid_pre.{lm.n_layers // 3}"
    contrast = starter_pairs(pairs)
    with console.status(f"extracting mean_diff at {site} from {len(contrast)} pairs ..."):
        vector = mean_diff(lm, contrast, [site])
    console.print(f"{pairs} vector at {site}: {len(contrast)} pairs, norm {vector.meta['norms'][site]:.2f}")
    texts = {}
    runs = [
        ("unsteered", 0.0),
        (f"+{coefficient:g} x vector", coefficient),
        (f"-{coefficient:g} x vector", -coefficient),
    ]
    for label, coef in runs:
        with console.status(f"generating {label} ..."), vector.apply(lm, coefficient=coef):
            texts[label] = generate_text(lm, prompt, max_new_tokens=max_new_tokens, repetition_penalty=1.3)
    table = Table(title=f"steering {lm.name} at {site} (greedy decoding)", show_lines=True)
    table.add_column("prompt", style="bold")
    for label in texts:
        table.add_column(label)
    for i, p in enumerate(prompt):
        table.add_row(p, *(texts[label][i].strip() for label in texts))
    console.print(table)


def _text_spec(text: str, n: int, seq_len: int, batch_size: int, seed: int):
    from .report.depth import TextSpec

    return TextSpec(source=text, n=n, seq_len=seq_len, batch_size=batch_size, seed=seed)


def _fit_range(value: str) -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in value.split(","))
    except ValueError as exc:
        raise typer.BadParameter(f"expected two fractions like 0.2,0.8, got {value!r}") from exc
    return lo, hi


TEXT_HELP = "'wikipedia' (built-in), or a .txt (documents split at blank lines), .jsonl ('text') or .json file"


def _depth_run(models, out, overwrite, text, n, seq_len, batch_size, seed, fit_range, n_boot, dtype, device):
    from .report.depth import DepthRun

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
    from .core.models import ModelLoadError
    from .report.depth import print_summary

    try:
        folder, rows = fn(*args, console=console, **kwargs)
    except (FileExistsError, FileNotFoundError, ValueError, ModelLoadError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    print_summary(rows, console, title)
    console.print(f"results: {folder}  (open {folder / 'index.html'})")


@app.command()
def norms(
    models: list[str] = typer.Argument(None, help=MODEL_HELP + "; several allowed"),  # noqa: B008
    out: Path = typer.Option(Path("runs/norms"), help="output folder (must not exist unless --overwrite)"),  # noqa: B008
    overwrite: bool = typer.Option(False, help="replace an existing output folder once the new one is complete"),
    text: str = typer.Option("wikipedia", help=TEXT_HELP),
    n: int = typer.Option(64, help="number of sequences"),
    seq_len: int = typer.Option(128, help="tokens per sequence"),
    batch_size: int = typer.Option(8),
    seed: int = typer.Option(0, help="seed of the document selection"),
    fit_range: str = typer.Option("0.2,0.8", help="fraction of layer boundaries the growth fit covers"),
    n_boot: int = typer.Option(1000, help="bootstrap resamples over sequences"),
    dtype: str = typer.Option("float32"),
    device: str = typer.Option("cpu"),
) -> None:
    """Residual norm growth per site, raw and mean-centred, with the fitted per-layer growth rate."""
    from .report.depth import run_norms

    run = _depth_run(models, out, overwrite, text, n, seq_len, batch_size, seed, fit_range, n_boot, dtype, device)
    _run_depth(run_norms, "residual norm growth", run)


@app.command()
def horizon(
    models: list[str] = typer.Argument(None, help=MODEL_HELP + "; several allowed"),  # noqa: B008
    out: Path = typer.Option(Path("runs/horizon"), help="output folder (must not exist unless --overwrite)"),  # noqa: B008
    overwrite: bool = typer.Option(False, help="replace an existing output folder once the new one is complete"),
    ks: str = typer.Option("", help="horizons to sweep, e.g. 1,2,4,8 (default: every k = 1..L)"),
    source: str = typer.Option("clean", help="clean: windows of clean outputs; propagated: errors compound"),
    keep_embedding: bool = typer.Option(False, help="keep the embedding in every truncated stream"),
    fill: str = typer.Option("zero", help="zero, or mean: out-of-window outputs replaced by their data mean"),
    enforce_from: int = typer.Option(-1, help="enforce the horizon only at layers >= K for every k (-1: K = k)"),
    readout_only: bool = typer.Option(False, help="truncate only the residual the final norm reads"),
    position0: str = typer.Option("patch", help="patch: position 0 is truncated too; keep: left whole"),
    max_delta_ce: float = typer.Option(0.1, help="k* threshold on |delta CE| (nats)"),
    max_kl: float = typer.Option(0.1, help="k* threshold on KL(clean || patched)"),
    text: str = typer.Option("wikipedia", help=TEXT_HELP),
    n: int = typer.Option(64, help="number of sequences"),
    seq_len: int = typer.Option(128, help="tokens per sequence"),
    batch_size: int = typer.Option(8),
    seed: int = typer.Option(0, help="seed of the document selection"),
    fit_range: str = typer.Option("0.2,0.8", help="fraction of layer boundaries the growth fit covers"),
    n_boot: int = typer.Option(1000, help="bootstrap resamples over sequences"),
    dtype: str = typer.Option("float32"),
    device: str = typer.Option("cpu"),
) -> None:
    """The effective layer horizon: delta CE, KL and top-1 agreement against k, and k* per threshold."""
    from .depth.horizon import HorizonVariant
    from .report.depth import run_horizon

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


if __name__ == "__main__":
    app()

"""The Typer app, its console and the helpers every command module shares."""

from __future__ import annotations

import time

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Activation engineering and depth analysis.")
console = Console()

MODEL_HELP = "'default' (SmolLM2-135M-Instruct), a Hugging Face id, a local model folder or a .gguf file"


def _load(model: str, dtype: str, device: str):
    from ..core.models import ModelLoadError, load_model

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
    from ..steering.generate import steered_completions
    from ..steering.methods import mean_diff
    from ..steering.pairs import starter_pairs

    lm = _load(model, dtype, device)
    site = site or f"resid_pre.{lm.n_layers // 3}"
    contrast = starter_pairs(pairs)
    with console.status(f"extracting mean_diff at {site} from {len(contrast)} pairs ..."):
        vector = mean_diff(lm, contrast, [site])
    console.print(f"{pairs} vector at {site}: {len(contrast)} pairs, norm {vector.meta['norms'][site]:.2f}")
    with console.status("generating ..."):
        texts = steered_completions(
            lm, vector, prompt, [0.0, coefficient, -coefficient], max_new_tokens=max_new_tokens, repetition_penalty=1.3
        )
    print_side_by_side(texts, prompt, f"steering {lm.name} at {site} (greedy decoding)")


def print_side_by_side(texts: dict[str, list[str]], prompts: list[str], title: str) -> None:
    """Completions per setting, one column each, one row per prompt."""
    table = Table(title=title, show_lines=True)
    table.add_column("prompt", style="bold")
    for label in texts:
        table.add_column(label)
    for i, p in enumerate(prompts):
        table.add_row(p, *(texts[label][i].strip() for label in texts))
    console.print(table)

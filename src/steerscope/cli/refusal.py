"""CLI: `steerscope refusal`."""

from __future__ import annotations

from pathlib import Path

import typer

from ._app import MODEL_HELP, app, console


@app.command()
def refusal(
    model: str = typer.Argument("default", help=MODEL_HELP + " (an instruct model with a chat template)"),
    out: Path = typer.Option(Path("runs/refusal"), help="result folder"),  # noqa: B008
    n_val: int = typer.Option(32, help="train instructions of each kind held back to select the direction"),
    n_fit: int = typer.Option(0, help="train instructions of each kind to make candidates from (0: all but --n-val)"),
    kl_max: float = typer.Option(0.1, help="largest KL(clean || ablated) on harmless prompts a candidate may cause"),
    max_layer_frac: float = typer.Option(0.8, help="only layers below this fraction of the depth are candidates"),
    induce_min: str = typer.Option(
        "0", help="refusal score (log-odds) adding a candidate must exceed on harmless prompts, or 'baseline'"
    ),
    layer_step: int = typer.Option(1, help="score every k-th layer only (for large models)"),
    last_positions: int = typer.Option(0, help="score only the last N post-instruction positions (0: all)"),
    max_new_tokens: int = typer.Option(48, help="tokens generated per test completion (greedy)"),
    n_test: int = typer.Option(0, help="held-out instructions of each kind to complete (0: all 48)"),
    batch_size: int = typer.Option(16, help="prompts per forward pass"),
    export_model: bool = typer.Option(True, "--export/--no-export", help="bake the direction into the weights"),
    overwrite: bool = typer.Option(False, help="replace an existing result folder once the new one is complete"),
    dtype: str = typer.Option("float32", help="float32, bfloat16, float16 or auto"),
    device: str = typer.Option("cpu", help="cpu, cuda, ..."),
) -> None:
    """Find the refusal direction, ablate it, add it, and export the orthogonalized model.

    Writes direction.safetensors, candidates.csv/png, completions.jsonl, summary.json, index.html and
    (with --export) model/, a Hugging Face folder. An interrupted run resumes its candidate scoring.
    """
    from ..core.models import ModelLoadError
    from ..refusal.run import RefusalRun, print_refusal_summary, run_refusal

    run = RefusalRun(
        model=model,
        out=out,
        n_val=n_val,
        n_fit=n_fit or None,
        kl_max=kl_max,
        max_layer_frac=max_layer_frac,
        induce_min=induce_min if induce_min == "baseline" else float(induce_min),
        layer_step=layer_step,
        last_positions=last_positions or None,
        max_new_tokens=max_new_tokens,
        n_test=n_test or None,
        batch_size=batch_size,
        export_model=export_model,
        overwrite=overwrite,
        dtype=dtype,
        device=device,
    )
    try:
        folder, summary = run_refusal(run, console)
    except (ModelLoadError, ValueError, FileExistsError, RuntimeError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    print_refusal_summary(summary, console)
    console.print(f"results: {folder}/index.html")

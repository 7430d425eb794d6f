"""CLI: `steerscope refusal`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._app import MODEL_HELP, Device, Dtype, MaxNewTokens, Out, Overwrite, Restart, TrustRemoteCode, app, console


def _induce_min(value: str) -> float | str:
    if value == "baseline":
        return value
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"--induce-min expects a number or 'baseline', got {value!r}") from None


@app.command()
def refusal(
    model: Annotated[str, typer.Argument(help=MODEL_HELP + " (an instruct model with a chat template)")] = "default",
    out: Out = Path("runs/refusal"),
    n_val: Annotated[int, typer.Option(help="train instructions of each kind held back to select the direction")] = 32,
    n_fit: Annotated[
        int, typer.Option(help="train instructions of each kind to make candidates from (0: all but --n-val)")
    ] = 0,
    kl_max: Annotated[
        float, typer.Option(help="largest KL(clean || ablated) on harmless prompts a candidate may cause")
    ] = 0.1,
    max_layer_frac: Annotated[
        float, typer.Option(help="only layers below this fraction of the depth are candidates")
    ] = 0.8,
    induce_min: Annotated[
        str,
        typer.Option(help="refusal score (log-odds) adding a candidate must exceed on harmless prompts, or 'baseline'"),
    ] = "0",
    layer_step: Annotated[int, typer.Option(help="score every k-th layer only (for large models)")] = 1,
    last_positions: Annotated[int, typer.Option(help="score only the last N post-instruction positions (0: all)")] = 0,
    max_new_tokens: MaxNewTokens = 48,
    n_test: Annotated[int, typer.Option(help="held-out instructions of each kind to complete (0: all 48)")] = 0,
    batch_size: Annotated[int, typer.Option(help="prompts per forward pass")] = 16,
    export_model: Annotated[
        bool, typer.Option("--export/--no-export", help="bake the direction into the weights")
    ] = True,
    overwrite: Overwrite = False,
    restart: Restart = False,
    dtype: Dtype = "float32",
    device: Device = "cpu",
    trust_remote_code: TrustRemoteCode = False,
) -> None:
    """Find the refusal direction, ablate it, add it, and export the orthogonalized model.

    Writes direction.safetensors, candidates.csv/png, completions.jsonl, summary.json, index.html and
    (with --export) model/, a Hugging Face folder. An interrupted run resumes its candidate scoring.
    """
    from ..refusal.run import RefusalRun, print_refusal_summary, run_refusal

    run = RefusalRun(
        model=model,
        out=out,
        n_val=n_val,
        n_fit=n_fit or None,
        kl_max=kl_max,
        max_layer_frac=max_layer_frac,
        induce_min=_induce_min(induce_min),
        layer_step=layer_step,
        last_positions=last_positions or None,
        max_new_tokens=max_new_tokens,
        n_test=n_test or None,
        batch_size=batch_size,
        export_model=export_model,
        overwrite=overwrite,
        restart=restart,
        dtype=dtype,
        device=device,
        trust_remote_code=trust_remote_code,
    )
    folder, summary = run_refusal(run, console)
    print_refusal_summary(summary, console)
    console.print(f"results: {folder}/index.html")

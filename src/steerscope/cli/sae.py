"""CLI: `steerscope sae train` and `steerscope sae features`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._app import MODEL_HELP, _load, app, console

sae_app = typer.Typer(
    help="Sparse autoencoders: train, inspect features, compare with steering vectors.", no_args_is_help=True
)
app.add_typer(sae_app, name="sae")


@sae_app.command()
def train(
    model: Annotated[str, typer.Argument(help=MODEL_HELP)] = "default",
    site: Annotated[str, typer.Option(help="where the SAE reads, e.g. resid_pre.10")] = "resid_pre.10",
    out: Annotated[Path | None, typer.Option(help="output folder (an unfinished run there is resumed)")] = None,
    architecture: Annotated[str, typer.Option(help="topk, or relu (ReLU + L1)")] = "topk",
    expansion: Annotated[int, typer.Option(help="latents per model dimension")] = 8,
    k: Annotated[int, typer.Option(help="active latents per token (topk)")] = 32,
    l1_coefficient: Annotated[float, typer.Option(help="L1 weight (relu), scale-free")] = 0.2,
    tokens: Annotated[int, typer.Option(help="training activations (positions after the first)")] = 200_000,
    seq_len: Annotated[int, typer.Option(help="tokens per sequence")] = 64,
    batch_size: Annotated[int, typer.Option(help="activations per optimizer step")] = 1024,
    lr: Annotated[float | None, typer.Option(help="learning rate (default: scaled with the number of latents)")] = None,
    text: Annotated[
        str, typer.Option(help="'wikipedia', 'movie-reviews' (built-in) or a .txt / .jsonl / .json file; join with +")
    ] = "wikipedia",
    n_eval: Annotated[int, typer.Option(help="held-out sequences for FVE, L0, dead latents and delta CE")] = 32,
    seed: Annotated[int, typer.Option()] = 0,
    threads: Annotated[int, typer.Option(help="torch CPU threads")] = 1,
    dtype: Annotated[str, typer.Option()] = "float32",
    device: Annotated[str, typer.Option()] = "cpu",
) -> None:
    """Train an SAE on streamed activations; saves cfg.json + sae_weights.safetensors (SAELens layout)."""
    import torch

    from ..core.sites import SiteError
    from ..sae.train import TrainConfig, train_sae

    torch.set_num_threads(threads)
    lm = _load(model, dtype, device)
    arch = "standard" if architecture == "relu" else architecture
    out = out or Path("runs/sae") / f"{lm.name.replace('/', '_')}_{site}_{arch}_x{expansion}"
    cfg = TrainConfig(
        site=site,
        expansion=expansion,
        architecture=arch,
        k=k,
        l1_coefficient=l1_coefficient,
        tokens=tokens,
        seq_len=seq_len,
        batch_size=batch_size,
        lr=lr,
        source=text,
        n_eval=n_eval,
        seed=seed,
    )
    try:
        r = train_sae(lm, out, cfg)
    except (ValueError, SiteError, FileNotFoundError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    e = r["eval"]
    recovered = "n/a" if e["ce_recovered"] is None else f"{e['ce_recovered']:.1%}"
    console.print(
        f"{r['d_sae']} latents at {site}, {r['train_tokens']:,} tokens in {r['train_seconds']:.0f}s; held-out "
        f"({e['tokens']:,} tokens): FVE {e['fve']:.3f}, L0 {e['l0']:.1f}, dead {e['dead_fraction']:.1%}, "
        f"spliced delta CE {e['delta_ce']:+.3f} nats (mean ablation {e['delta_ce_mean_ablation']:+.3f}; "
        f"recovered {recovered}); saved {out}"
    )


def _load_sae(folder: Path):
    from ..sae.saelens import SAEFileError, load_saelens

    try:
        return load_saelens(folder)
    except SAEFileError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc


@sae_app.command()
def features(
    sae_folder: Annotated[Path, typer.Argument(help="an SAE folder (cfg.json + sae_weights.safetensors)")],
    model: Annotated[str, typer.Option(help=MODEL_HELP)] = "default",
    pairs: Annotated[str, typer.Option(help="built-in contrast set (sentiment, weddings, formality) or a file")] = (
        "sentiment"
    ),
    split: Annotated[str, typer.Option(help="train, test or all")] = "train",
    read: Annotated[str, typer.Option(help="last (last token) or max (max over tokens)")] = "last",
    by: Annotated[str, typer.Option(help="rank by auroc or mean_diff")] = "auroc",
    top: Annotated[int, typer.Option(help="latents shown per side")] = 5,
    snippets: Annotated[int, typer.Option(help="top-activating corpus snippets per latent (0: none)")] = 3,
    text: Annotated[
        str, typer.Option(help="corpus for the snippets: 'wikipedia', 'movie-reviews' or a text file")
    ] = "wikipedia",
    n_sequences: Annotated[int, typer.Option(help="corpus sequences searched for snippets")] = 256,
    seq_len: Annotated[int, typer.Option(help="tokens per corpus sequence")] = 64,
    out: Annotated[Path | None, typer.Option(help="write the ranking and snippets to this JSON file")] = None,
    threads: Annotated[int, typer.Option(help="torch CPU threads")] = 1,
    dtype: Annotated[str, typer.Option()] = "float32",
    device: Annotated[str, typer.Option()] = "cpu",
) -> None:
    """Rank SAE latents by how well they separate the two sides of contrast pairs; show what they fire on."""
    import torch
    from rich.table import Table

    from ..core.io import write_json
    from ..sae.features import find_features, top_activating
    from ..steering.pairs import PairDataError, load_pairs

    torch.set_num_threads(threads)
    sae = _load_sae(sae_folder)
    lm = _load(model, dtype, device)
    try:
        contrast = load_pairs(pairs, split)
        ranked = find_features(lm, sae, contrast, read=read, by=by, top=top)
        latents = [r["latent"] for side in ranked.values() for r in side]
        shown = top_activating(lm, sae, latents, text, n_sequences, seq_len, top=snippets) if snippets else {}
    except (ValueError, PairDataError, FileNotFoundError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    for side, rows in ranked.items():
        table = Table(title=f"{side} side of {pairs} ({len(contrast)} pairs, read={read}) at {sae.cfg.site}")
        for col in ("latent", "AUROC", "mean diff", "active +/-", "top-activating snippets"):
            table.add_column(col)
        for r in rows:
            texts = "\n".join(f"{s['value']:.1f}: {s['text']}" for s in shown.get(r["latent"], []))
            table.add_row(
                str(r["latent"]),
                f"{r['auroc']:.3f}",
                f"{r['mean_diff']:+.2f}",
                f"{r['active_pos']:.0%}/{r['active_neg']:.0%}",
                texts,
            )
        console.print(table)
    if out is not None:
        write_json(
            out,
            {
                "pairs": pairs,
                "split": split,
                "read": read,
                "by": by,
                "site": sae.cfg.site,
                "ranking": ranked,
                "snippets": {str(k): v for k, v in shown.items()},
            },
        )
        console.print(f"wrote {out}")


@sae_app.command()
def steer(
    sae_folder: Annotated[Path, typer.Argument(help="an SAE folder (cfg.json + sae_weights.safetensors)")],
    latent: Annotated[int, typer.Option(help="the latent to steer with")],
    model: Annotated[str, typer.Option(help=MODEL_HELP)] = "default",
    mode: Annotated[str, typer.Option(help="clamp (set the latent, keep the SAE error) or add (decoder row)")] = (
        "clamp"
    ),
    value: Annotated[list[float], typer.Option(help="clamp values, or coefficients of the unit decoder row")] = [  # noqa: B006
        20.0
    ],
    prompt: Annotated[list[str], typer.Option(help="prompt(s) to complete")] = [  # noqa: B006
        "I went to the park today and",
        "My opinion of the new restaurant is that",
    ],
    max_new_tokens: Annotated[int, typer.Option()] = 30,
    threads: Annotated[int, typer.Option(help="torch CPU threads")] = 1,
    dtype: Annotated[str, typer.Option()] = "float32",
    device: Annotated[str, typer.Option()] = "cpu",
) -> None:
    """Completions unsteered and with one SAE latent clamped (or its decoder direction added), side by side."""
    from contextlib import nullcontext

    import torch

    from ..core.generate import generate_text
    from ..sae.steer import sae_add_vector, sae_clamp
    from ._app import print_side_by_side

    if mode not in ("clamp", "add"):
        console.print(f"[red]error:[/red] mode must be clamp or add, got {mode!r}")
        raise typer.Exit(2)
    torch.set_num_threads(threads)
    sae = _load_sae(sae_folder)
    lm = _load(model, dtype, device)
    texts = {}
    try:
        for v in [None, *value]:
            if v is None:
                ctx, label = nullcontext(), "unsteered"
            elif mode == "clamp":
                ctx, label = sae_clamp(lm, sae, latent, v), f"latent {latent} := {v:g}"
            else:
                ctx, label = sae_add_vector(lm, sae, latent).apply(lm, v), f"{v:+g} x decoder row {latent}"
            with ctx:
                texts[label] = generate_text(lm, prompt, max_new_tokens=max_new_tokens, repetition_penalty=1.3)
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    print_side_by_side(texts, prompt, f"{mode} at {sae.cfg.site} of {lm.name} (greedy decoding)")

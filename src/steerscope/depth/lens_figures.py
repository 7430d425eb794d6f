"""Figures of the depth instruments: lens curves, sublayer contributions, layer skipping and the skip matrix."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..render.figures import plt, save_figure

_LENS_LABELS = {
    "kl": "KL(final || lens) (nats)",
    "top1": "top-1 agreement",
    "top5": "top-5 overlap",
    "ce": "cross-entropy (nats)",
}


def lens_figure(curves: dict[str, dict], title: str, path: Path, depths: dict | None = None) -> None:
    """KL, top-1, top-5 and CE against layer for each lens (name -> lens summary), with bootstrap bands."""
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.8))
    for i, (name, summary) in enumerate(curves.items()):
        rows = summary["per_layer"]
        layers = np.asarray([r["layer"] for r in rows])
        for ax, metric in zip(axes, _LENS_LABELS, strict=True):
            y = np.asarray([r[metric] for r in rows])
            ci = np.asarray([r[f"{metric}_ci"] for r in rows])
            ax.plot(layers, y, "o-", ms=3, color=f"C{i}", label=name)
            ax.fill_between(layers, ci[:, 0], ci[:, 1], color=f"C{i}", alpha=0.2)
    first = next(iter(curves.values()))
    axes[3].axhline(first["model_ce"], color="0.4", ls=":", lw=1, label="model")
    if depths:
        for ax, rule in ((axes[0], "kl"), (axes[2], "top5")):
            if depths.get(rule) is not None:
                ax.axvline(
                    depths[rule] - 1, color="C3", ls="--", lw=1, label=f"effective depth ({rule}) {depths[rule]}"
                )
    for ax, (metric, label) in zip(axes, _LENS_LABELS.items(), strict=True):
        ax.set_xlabel("layer l (lens at resid_post.l)")
        ax.set_ylabel(label)
        if metric == "kl":
            ax.set_yscale("symlog", linthresh=1e-2)
            ax.set_ylim(bottom=0)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    save_figure(fig, path)


def contributions_figure(rows: list[dict], title: str, path: Path) -> None:
    """Each part's norm ratio (log) and cosine with the residual it reads, against layer."""
    layers = np.asarray([r["layer"] for r in rows])
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    for part, marker in (("attn", "o"), ("mlp", "s"), ("layer", "^")):
        for a, key in ((ax, "ratio"), (ax2, "cosine")):
            y = np.asarray([r[f"{part}_{key}"] for r in rows])
            ci = np.asarray([r[f"{part}_{key}_ci"] for r in rows])
            a.plot(layers, y, marker + "-", ms=3, label=part)
            a.fill_between(layers, ci[:, 0], ci[:, 1], alpha=0.2)
    ax.set_yscale("log")
    ax.set_ylabel("||output|| / ||residual read|| (per token)")
    ax2.axhline(0, color="0.5", lw=0.8)
    ax2.set_ylabel("cos(output, residual read)")
    for a in (ax, ax2):
        a.set_xlabel("layer")
        a.legend(fontsize=8)
    fig.suptitle(title)
    save_figure(fig, path)


def skipping_figure(summary: dict, title: str, path: Path) -> None:
    """Delta CE and KL of skipping each layer and swapping each adjacent pair, and the skip matrix."""
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
    for ax, metric, label in ((axes[0], "delta_ce", "delta CE (nats)"), (axes[1], "kl", "KL(clean || patched)")):
        for kind, marker in (("skip", "o"), ("swap", "s")):
            rows = summary[kind]
            if not rows:
                continue
            x = np.asarray([r["layer"] for r in rows]) + (0.5 if kind == "swap" else 0.0)
            y = np.asarray([r[metric] for r in rows])
            ci = np.asarray([r[f"{metric}_ci"] for r in rows])
            ax.plot(x, y, marker + "-", ms=3, label="skip layer l" if kind == "skip" else "swap l, l+1 (at l+0.5)")
            ax.fill_between(x, ci[:, 0], ci[:, 1], alpha=0.2)
        ax.set_yscale("symlog", linthresh=1e-2)
        ax.set_ylim(bottom=min(0.0, ax.get_ylim()[0]))
        ax.set_xlabel("layer")
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
    matrix = np.asarray([[np.nan if v is None else v for v in row] for row in summary["matrix"]], dtype=float)
    shown = np.log10(np.clip(matrix, 1e-4, None))
    im = axes[2].imshow(shown, origin="lower", cmap="viridis", aspect="auto")
    fig.colorbar(im, ax=axes[2], label="log10 relative change of layer j's write")
    axes[2].set_xlabel("later layer j")
    axes[2].set_ylabel("skipped layer i")
    axes[2].set_title("skip matrix", fontsize=9)
    fig.suptitle(title)
    save_figure(fig, path)

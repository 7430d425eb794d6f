"""Depth figures: norm growth, the horizon curve, k* against depth and growth rate."""

from __future__ import annotations

from pathlib import Path

import matplotlib.ticker
import numpy as np

from ..render.figures import plt, save_figure


def norms_figure(result: dict, title: str, path: Path) -> None:
    """Stream norm per layer boundary on a log axis, raw and centred, with the fitted growth lines."""
    stream, fit = result["stream"], result["fit"]
    layers = np.asarray(stream["layer"])
    lo, hi = fit["layers"]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for key, color in (("raw", "C0"), ("centred", "C1")):
        y = np.asarray(stream[key])
        ax.semilogy(layers, y, "o-", color=color, ms=3, label=f"{key} (x{fit[key]['rate']:.3f}/layer)")
        xs = np.arange(lo, hi + 1)
        line = np.exp(np.log(y[lo : hi + 1]).mean() + np.log(fit[key]["rate"]) * (xs - xs.mean()))
        ax.semilogy(xs, line, "--", color=color, lw=1)
    ax.axvspan(lo, hi, color="0.9", zorder=0, label=f"fit range {lo}-{hi}")
    ax.set_xlabel("layer boundary l (resid_pre.l; L = final)")
    ax.set_ylabel("mean L2 norm (positions >= 1)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    sub = result["sublayers"]
    n = [s["layer"] for s in sub]
    ax2.plot(n, [s["attn_ratio"] for s in sub], "o-", ms=3, label="attn_out / resid_pre")
    ax2.plot(n, [s["mlp_ratio"] for s in sub], "s-", ms=3, label="mlp_out / MLP's stream input")
    ax2.set_xlabel("layer")
    ax2.set_ylabel("sublayer output norm / stream norm")
    ax2.legend(fontsize=8)
    save_figure(fig, path)


def horizon_figure(summary: dict, title: str, path: Path) -> None:
    """Delta CE, KL and top-1 agreement against k, with bootstrap bands and k* marked."""
    rows = summary["per_k"]
    ks = np.asarray([r["k"] for r in rows])
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    labels = {"delta_ce": "delta CE (nats)", "kl": "KL(clean || patched)", "top1": "top-1 agreement"}
    for ax, metric in zip(axes, ("delta_ce", "kl", "top1"), strict=True):
        y = np.asarray([r[metric] for r in rows])
        ci = np.asarray([r[f"{metric}_ci"] for r in rows])
        ax.plot(ks, y, "o-", ms=3)
        ax.fill_between(ks, ci[:, 0], ci[:, 1], alpha=0.25)
        if metric in summary["k_star"]:
            star = summary["k_star"][metric]
            ax.axhline(star["threshold"], color="0.5", ls=":", lw=1)
            if star["k"] is not None:
                ax.axvline(star["k"], color="C3", ls="--", lw=1, label=f"k* = {star['k']}")
                ax.legend(fontsize=8)
        if metric != "top1" and (y > 0).all():
            ax.set_yscale("log")
        ax.set_xlabel("horizon k (layers)")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_title(labels[metric], fontsize=10)
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)


def scaling_figure(rows: list[dict], x_key: str, x_label: str, path: Path) -> None:
    """k* (both thresholds) against a per-model quantity, one point per model."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for metric, marker in (("k_star_delta_ce", "o"), ("k_star_kl", "x")):
        pts = [(r[x_key], r[metric], r["model"]) for r in rows if r.get(metric) is not None and r.get(x_key)]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker, ls="", label=metric.replace("k_star_", "k* by "))
            for x, y, name in pts:
                ax.annotate(name.split("/")[-1], (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(x_label)
    ax.set_ylabel("horizon k*")
    ax.legend(fontsize=8)
    save_figure(fig, path)

"""Depth figures: norm growth, the horizon curves (per variant, per capability), the per-layer profile, and
k*/L against depth and growth rate."""

from __future__ import annotations

from pathlib import Path

import matplotlib.ticker
import numpy as np

from ..render.figures import plt, save_figure

_METRIC_LABELS = {"delta_ce": "delta CE (nats)", "kl": "KL(clean || patched)", "top1": "top-1 agreement"}


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
        ax.set_title(_METRIC_LABELS[metric], fontsize=10)
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)


def variants_figure(summaries: dict[str, dict], metric: str, title: str, path: Path) -> None:
    """One metric against k, one curve (with its bootstrap band) per horizon variant."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    positive = True
    for i, (name, summary) in enumerate(summaries.items()):
        rows = summary["per_k"]
        ks = np.asarray([r["k"] for r in rows])
        y = np.asarray([r[metric] for r in rows])
        ci = np.asarray([r[f"{metric}_ci"] for r in rows])
        star = summary["k_star"].get(metric, {}).get("k")
        label = name + (f" (k* = {star})" if star is not None else "")
        ax.plot(ks, y, "o-", ms=3, color=f"C{i}", label=label)
        ax.fill_between(ks, ci[:, 0], ci[:, 1], color=f"C{i}", alpha=0.15)
        positive = positive and bool((y > 0).all())
    if metric in next(iter(summaries.values()))["k_star"]:
        ax.axhline(next(iter(summaries.values()))["k_star"][metric]["threshold"], color="0.5", ls=":", lw=1)
    if metric != "top1" and positive:
        ax.set_yscale("log")
    ax.set_xlabel("horizon k (layers)")
    ax.set_ylabel(_METRIC_LABELS[metric])
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=10)
    save_figure(fig, path)


def capability_figure(capabilities: dict[str, dict[str, dict]], title: str, path: Path) -> None:
    """Each task's accuracy against k, one curve per variant, the clean accuracy dashed."""
    fig, axes = plt.subplots(1, len(capabilities), figsize=(5.5 * len(capabilities), 3.8), squeeze=False)
    for ax, (task, by_variant) in zip(axes[0], capabilities.items(), strict=True):
        for i, (name, summary) in enumerate(by_variant.items()):
            rows = summary["per_k"]
            ks = np.asarray([r["k"] for r in rows])
            ci = np.asarray([r["score_ci"] for r in rows])
            star = summary["k_star"]
            ax.plot(ks, [r["score"] for r in rows], "o-", ms=3, color=f"C{i}", label=f"{name} (k* = {star})")
            ax.fill_between(ks, ci[:, 0], ci[:, 1], color=f"C{i}", alpha=0.15)
        clean = next(iter(by_variant.values()))
        ax.axhline(clean["clean"], color="k", ls="--", lw=1, label=f"clean {clean['clean']:.2f}")
        ax.axhline(clean["clean"] - clean["tolerance"], color="0.5", ls=":", lw=1)
        ax.set_xlabel("horizon k (layers)")
        ax.set_ylabel("top-1 accuracy")
        ax.set_title(task, fontsize=10)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)


def profile_figure(profile: dict, title: str, path: Path) -> None:
    """Heat map of delta CE by layer (truncated alone) and window, and k*_n per layer."""
    ks = profile["ks"]
    dce = np.asarray(profile["mean"]["delta_ce"])  # [L][K]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [3, 2]})
    shown = np.log10(np.clip(np.abs(dce), 1e-4, None))
    im = ax.imshow(shown.T, aspect="auto", origin="lower", cmap="viridis")
    ax.set_yticks(range(len(ks)), [str(k) for k in ks])
    ax.set_xlabel("layer n (only its sublayers truncated)")
    ax.set_ylabel("window k")
    fig.colorbar(im, ax=ax, label="log10 |delta CE| (nats)")
    star = [s if s is not None else np.nan for s in profile["k_star"]]
    ax2.bar(range(len(star)), star, color="C0")
    missing = [n for n, s in enumerate(profile["k_star"]) if s is None]
    if missing:
        ax2.plot(missing, [max(ks)] * len(missing), "rx", label="no window under threshold")
        ax2.legend(fontsize=7)
    ax2.set_xlabel("layer n")
    ax2.set_ylabel(f"k*_n (|delta CE| < {profile['threshold']:g})")
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)


def scaling_figure(rows: list[dict], x_key: str, x_label: str, path: Path) -> None:
    """k*/L (every threshold, variant and capability in the rows) against a per-model quantity, models labelled."""
    series = [k for k in rows[0] if k.startswith("k_star_") and k.endswith("_over_layers")] if rows else []
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    markers = "ox^sv<>dp*h"
    for i, key in enumerate(series):
        pts = [(r[x_key], r[key], r["model"]) for r in rows if r.get(key) is not None and r.get(x_key)]
        if not pts:
            continue
        label = key.removeprefix("k_star_").removesuffix("_over_layers")
        ax.plot([p[0] for p in pts], [p[1] for p in pts], markers[i % len(markers)], ls="", label=label)
        for x, y, name in pts:
            ax.annotate(name.split("/")[-1], (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(x_label)
    ax.set_ylabel("k* / L")
    ax.legend(fontsize=6, ncol=2)
    save_figure(fig, path)

"""Figures of a sweep report: sample-complexity curves, effect vs fluency, layer sweep, layer x coefficient, and
for A/B datasets CAA's P-vs-multiplier figure and its layer sweep (PNG)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.ticker
import numpy as np

from ..core.sites import SiteError, split_site
from ..render.figures import plt, save_figure

METHOD_COLORS = ["C0", "C1", "C2", "C3", "C5", "C6", "C8", "C9"]  # C4 and C7 belong to baselines
BASELINE_STYLE = {"unsteered": ("k", "unsteered"), "prompting": ("C4", "prompting"), "random": ("C7", "random dir.")}


def _band(ax, summary: dict | None, color: str, label: str) -> None:
    if not summary:
        return
    ax.axhline(summary["value"], color=color, ls="--", lw=1, label=label)
    ax.axhspan(*summary["ci"], color=color, alpha=0.12, lw=0)


def sample_complexity_figure(
    curves: dict[str, list[dict]], baselines: dict[str, dict], effect_label: str, title: str, path: Path
) -> None:
    """Effect (test) and fluency cost against n_pairs, one line per method with 95% intervals; baselines as bands.

    baselines: {name: {"effect": summary, "fluency_cost": summary}} with summaries {"value", "ci"}."""
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.3))
    for i, (method, points) in enumerate(sorted(curves.items())):
        for a, key in ((ax, "effect"), (ax2, "fluency_cost")):
            pts = [p for p in points if p.get(key)]
            if not pts:
                continue
            x = np.asarray([p["n_pairs"] for p in pts])
            y = np.asarray([p[key]["value"] for p in pts])
            ci = np.asarray([p[key]["ci"] for p in pts])
            if len(x) == 1:
                a.errorbar(x, y, yerr=[y - ci[:, 0], ci[:, 1] - y], fmt="s", color=_color(i), capsize=3, label=method)
            else:
                a.plot(x, y, "o-", color=_color(i), ms=4, label=method)
                a.fill_between(x, ci[:, 0], ci[:, 1], color=_color(i), alpha=0.18, lw=0)
    for name, (color, label) in BASELINE_STYLE.items():
        _band(ax, (baselines.get(name) or {}).get("effect"), color, label)
        _band(ax2, (baselines.get(name) or {}).get("fluency_cost"), color, label)
    for a, ylabel in ((ax, effect_label + " (test)"), (ax2, "fluency cost (nats/token vs unsteered)")):
        a.set_xscale("log", base=2)
        a.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        a.set_xlabel("contrast pairs n")
        a.set_ylabel(ylabel)
    ax.legend(fontsize=8, loc="best")
    ax.set_title("effect at each method's chosen coefficient", fontsize=10)
    ax2.set_title("fluency cost at the same settings", fontsize=10)
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)


def amortized_cost_figure(
    curves: dict[str, list[dict]], baselines: dict[str, dict], effect_label: str, title: str, path: Path
) -> None:
    """Effect (test) against the total cost of finding each intervention: model tokens read (the pairs, plus
    an SAE's training tokens) and estimated FLOPs, one line per method over n_pairs; baselines as bands.
    Each method's points are shifted right by a factor 1.12^i so that methods of equal cost do not hide
    each other."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.3))
    for ax, key, xlabel in (
        (axes[0], "cost_total_tokens", "model tokens read (pairs + SAE training)"),
        (axes[1], "cost_total_flops", "estimated FLOPs (pairs + SAE training)"),
    ):
        for i, (method, points) in enumerate(sorted(curves.items())):
            pts = sorted((p for p in points if p.get("effect") and p.get(key)), key=lambda p: p[key])
            if not pts:
                continue
            x = np.asarray([p[key] for p in pts]) * 1.12**i  # dodged: methods of equal cost stay apart
            y = np.asarray([p["effect"]["value"] for p in pts])
            ci = np.asarray([p["effect"]["ci"] for p in pts])
            ax.errorbar(
                x, y, yerr=[y - ci[:, 0], ci[:, 1] - y], fmt="o-", ms=4, capsize=2, color=_color(i), label=method
            )
            for p, xv, yv in zip(pts, x, y, strict=True):
                ax.annotate(f"n={p['n_pairs']}", (xv, yv), fontsize=6, xytext=(3, 3), textcoords="offset points")
        for name, (color, label) in BASELINE_STYLE.items():
            _band(ax, (baselines.get(name) or {}).get("effect"), color, label)
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(effect_label + " (test)")
    axes[0].legend(fontsize=8, loc="best")
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)


def tradeoff_figure(lines: dict[str, list[dict]], baselines: dict[str, dict], effect_label: str, title: str, path):
    """Validation effect against fluency cost over the coefficient grid, one line per method."""
    fig, ax = plt.subplots(figsize=(6.5, 4.6))
    for i, (label, points) in enumerate(sorted(lines.items())):
        points = sorted(points, key=lambda p: p["coefficient"])
        x = [p["fluency_cost"] for p in points]
        y = [p["effect"] for p in points]
        ax.plot(x, y, "o-", color=_color(i), ms=4, label=label)
        for p in points:
            ax.annotate(
                f"{p['coefficient']:g}",
                (p["fluency_cost"], p["effect"]),
                fontsize=7,
                xytext=(3, 2),
                textcoords="offset points",
                color=_color(i),
            )
    for name, point in baselines.items():
        color, label = BASELINE_STYLE.get(name, ("k", name))
        ax.plot([point["fluency_cost"]], [point["effect"]], "*", ms=11, color=color, label=label)
    ax.set_xlabel("fluency cost (nats/token vs unsteered), validation")
    ax.set_ylabel(effect_label + " (validation)")
    ax.legend(fontsize=8)
    ax.set_title(title + "\n(numbers: coefficient)", fontsize=9)
    save_figure(fig, path)


def layer_figure(lines: dict[str, list[dict]], effect_label: str, title: str, path: Path) -> None:
    """Test effect at each site (at that site's chosen coefficient), one line per method."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    sites = sorted({p["site"] for pts in lines.values() for p in pts}, key=_site_order)
    pos = {s: i for i, s in enumerate(sites)}
    for i, (label, points) in enumerate(sorted(lines.items())):
        points = sorted(points, key=lambda p: pos[p["site"]])
        x = np.asarray([pos[p["site"]] for p in points])
        y = np.asarray([p["effect"]["value"] for p in points])
        ci = np.asarray([p["effect"]["ci"] for p in points])
        ax.errorbar(x, y, yerr=[y - ci[:, 0], ci[:, 1] - y], fmt="o-", color=_color(i), capsize=3, ms=4, label=label)
    ax.set_xticks(range(len(sites)), sites, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel(effect_label + " (test)")
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    save_figure(fig, path)


def layer_coefficient_figure(
    grid: list[dict], panels: list[tuple[str, str]], unsteered: dict, title: str, path: Path
) -> None:
    """One panel per metric: its value at each site, one line per method and coefficient, with 95% intervals;
    the unsteered value as a band (ActAdd's figure: share of completions on the topic by layer and coefficient).

    grid: [{"method", "site", "coefficient", metric: {"value", "ci"}}]; panels: [(metric, label)]."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.2), squeeze=False)
    sites = sorted({c["site"] for c in grid}, key=_site_order)
    pos = {s: i for i, s in enumerate(sites)}
    lines = sorted({(c["method"], c["coefficient"]) for c in grid})
    for ax, (metric, label) in zip(axes[0], panels, strict=True):
        for i, (method, coef) in enumerate(lines):
            pts = sorted((c for c in grid if (c["method"], c["coefficient"]) == (method, coef) and metric in c),
                         key=lambda c: pos[c["site"]])  # fmt: skip
            if not pts:
                continue
            x = np.asarray([pos[c["site"]] for c in pts]) + 0.06 * (i - (len(lines) - 1) / 2)  # dodged
            y = np.asarray([c[metric]["value"] for c in pts])
            ci = np.asarray([c[metric]["ci"] for c in pts])
            name = f"{method} x{coef:g}" if len({m for m, _ in lines}) > 1 else f"x{coef:g}"
            ax.errorbar(x, y, yerr=[y - ci[:, 0], ci[:, 1] - y], fmt="o-", ms=3, capsize=2, color=_color(i), label=name)
        _band(ax, unsteered.get(metric), "k", "unsteered")
        ax.set_xticks(range(len(sites)), sites, rotation=45, ha="right", fontsize=8)
        ax.set_ylabel(label)
    axes[0][0].legend(fontsize=7, loc="best", title="coefficient", title_fontsize=7)
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)


def caa_figure(curves: dict[str, list[dict]], title: str, path: Path) -> None:
    """CAA's figure: P(behaviour-matching answer) on test against the multiplier, one line per behaviour, with
    95% intervals. curves: {behaviour: [{"multiplier", "p", "p_lo", "p_hi"}]}."""
    fig, ax = plt.subplots(figsize=(6.8, 4.6))
    for i, (name, points) in enumerate(sorted(curves.items())):
        points = sorted(points, key=lambda p: p["multiplier"])
        x = np.asarray([p["multiplier"] for p in points])
        y = np.asarray([p["p"] for p in points])
        ax.plot(x, y, "o-", ms=4, color=_color(i), label=name)
        ax.fill_between(x, [p["p_lo"] for p in points], [p["p_hi"] for p in points], color=_color(i), alpha=0.15, lw=0)
    ax.axhline(0.5, color="0.6", lw=0.8, ls=":")
    ax.set_xlabel("multiplier (0: unsteered)")
    ax.set_ylabel("P(behaviour-matching answer), test")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="best")
    ax.set_title(title, fontsize=9)
    save_figure(fig, path)


def ab_layer_figure(sweep: dict[str, dict[str, float]], chosen: str, title: str, path: Path) -> None:
    """CAA's layer sweep: validation P(+1) - P(-1) at each site, one line per behaviour, their mean in black and
    the chosen site marked. sweep: {site: {behaviour: effect}}."""
    fig, ax = plt.subplots(figsize=(6.8, 4.4))
    sites = sorted(sweep, key=_site_order)
    behaviours = sorted({b for per in sweep.values() for b in per})
    x = np.arange(len(sites))
    for i, name in enumerate(behaviours):
        ax.plot(x, [sweep[s].get(name, np.nan) for s in sites], "o-", ms=3, lw=1, color=_color(i), label=name)
    ax.plot(x, [np.mean(list(sweep[s].values())) for s in sites], "k-", lw=2.2, label="mean (chooses)")
    if chosen in sweep:
        ax.axvline(sites.index(chosen), color="k", ls="--", lw=0.8)
    ax.axhline(0, color="0.6", lw=0.8, ls=":")
    ax.set_xticks(x, sites, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("P(+1) - P(-1), validation")
    ax.legend(fontsize=7, loc="best")
    ax.set_title(title, fontsize=9)
    save_figure(fig, path)


def _color(i: int) -> str:
    return METHOD_COLORS[i % len(METHOD_COLORS)]


def _site_order(site: str) -> tuple[int, str]:
    """Sites by layer, then kind; anything without a layer (embed, final, module paths) last."""
    try:
        parsed = split_site(site)
    except SiteError:
        return (10**6, site)
    return (parsed.layer, parsed.kind) if parsed.layer is not None else (10**6, site)


def per_item_figure(panels: list[dict], xlabel: str, title: str, path: Path) -> None:
    """One histogram per setting of its items' effects (every seed's), zero marked, the anti-steerable fraction
    and its interval in each panel's title. panels: [{"label", "effects" (1-D), "anti", "lo", "hi"}]."""
    n = len(panels)
    cols = min(3, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax, panel in zip(axes.ravel(), panels, strict=False):
        e = np.asarray(panel["effects"], dtype=float)
        e = e[np.isfinite(e)]
        if len(e):
            ax.hist(e, bins=min(30, max(5, len(e) // 2)), color="C0", alpha=0.8)
        ax.axvline(0, color="C3", lw=1.2, ls="--")
        ax.set_title(f"{panel['label']}\nwrong way {panel['anti']:.0%} [{panel['lo']:.0%}, {panel['hi']:.0%}]",
                     fontsize=8)  # fmt: skip
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel("items x seeds", fontsize=8)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)


def precheck_figure(panels: dict[str, list[dict]], rho: dict[str, str], effect_label: str, title: str, path) -> None:
    """The pre-check against the effect: one panel per method, a point per dataset, site and n_pairs (x: mean
    cosine of the pairs' differences to their mean; y: the validation effect there), colour by dataset.
    panels: {method: [{"dataset", "diff_cosine_to_mean", "effect"}]}; rho: {method: text for its title}."""
    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(max(7.5, 4.6 * n), 4.0), squeeze=False)
    for ax, (method, points) in zip(axes[0], sorted(panels.items()), strict=True):
        datasets = sorted({p["dataset"] for p in points})
        for i, d in enumerate(datasets):
            pts = [p for p in points if p["dataset"] == d and p["diff_cosine_to_mean"] is not None]
            ax.scatter([p["diff_cosine_to_mean"] for p in pts], [p["effect"] for p in pts], s=16, color=_color(i),
                       label=d, alpha=0.8)  # fmt: skip
        ax.axhline(0, color="0.6", lw=0.8, ls=":")
        ax.set_xlabel("pre-check: mean cosine of differences to their mean", fontsize=8)
        ax.set_ylabel(effect_label, fontsize=8)
        ax.set_title(f"{method}: {rho.get(method, '')}", fontsize=8)
        if len(datasets) > 1:
            ax.legend(fontsize=6, loc="best")
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)


def front_figure(searched: list[dict], gridded: list[dict], result: dict, objective: str, title: str, path) -> None:
    """Every evaluated setting (effect against side effect, validation), the search's and the grid's Pareto fronts
    as staircases, and each front's chosen point (a star)."""
    fig, ax = plt.subplots(figsize=(6.8, 4.6))
    for kind, pts, color, marker in (("search", searched, "C0", "o"), ("grid", gridded, "C1", "x")):
        if not pts:
            continue
        ax.scatter([p["side_effect"] for p in pts], [p["effect"] for p in pts], s=14, color=color, marker=marker,
                   alpha=0.45, label=f"{kind}: {len(pts)} settings")  # fmt: skip
        front = sorted(result[kind]["front"], key=lambda p: p["side_effect"])
        if front:
            ax.step([p["side_effect"] for p in front], [p["effect"] for p in front], where="post", color=color, lw=1.6,
                    label=f"{kind} front")  # fmt: skip
        chosen = result[kind].get("chosen")
        if chosen:
            ax.scatter([chosen["side_effect"]], [chosen["effect"]], s=140, marker="*", color=color, edgecolor="k",
                       zorder=5, label=f"{kind}: chosen")  # fmt: skip
    base = (searched or gridded)[0]["unsteered_effect"] if (searched or gridded) else None
    if base is not None:
        ax.axhline(base, color="k", ls="--", lw=0.8, label="unsteered")
    ax.set_xlabel(f"side effect: {objective} (lower is better)")
    ax.set_ylabel("effect (validation, higher is better)")
    ax.legend(fontsize=7, loc="best")
    ax.set_title(title, fontsize=9)
    save_figure(fig, path)


def entanglement_figure(rows: list[dict], title: str, path) -> None:
    """The entanglement matrix: rows the steered behaviour, columns the measured one (behaviours, then A/B files),
    each cell P(+1) - P(-1) written in it; a diverging colour scale centred at 0."""
    steered = sorted({r["steered"] for r in rows})
    measured = [m for m in steered if any(r["measured"] == m for r in rows)]
    measured += sorted({r["measured"] for r in rows} - set(measured))
    grid = np.full((len(steered), len(measured)), np.nan)
    for r in rows:
        grid[steered.index(r["steered"]), measured.index(r["measured"])] = r["effect"]
    bound = float(np.nanmax(np.abs(grid))) if np.isfinite(grid).any() else 1.0
    fig, ax = plt.subplots(figsize=(1.1 * len(measured) + 3, 0.55 * len(steered) + 2.2))
    im = ax.imshow(grid, cmap="RdBu_r", vmin=-bound, vmax=bound, aspect="auto")
    for i in range(len(steered)):
        for j in range(len(measured)):
            if np.isfinite(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:+.2f}", ha="center", va="center", fontsize=7,
                        fontweight="bold" if steered[i] == measured[j] else "normal")  # fmt: skip
    ax.set_xticks(range(len(measured)), measured, rotation=40, ha="right", fontsize=7)
    ax.set_yticks(range(len(steered)), steered, fontsize=7)
    ax.set_xlabel("measured on")
    ax.set_ylabel("vector of")
    fig.colorbar(im, ax=ax, shrink=0.8, label="P(+1) - P(-1)")
    ax.set_title(title, fontsize=8)
    save_figure(fig, path)

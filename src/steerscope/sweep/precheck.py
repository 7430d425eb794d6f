"""Does the steerability pre-check predict the effect here? The pairs' alignment at fit time (steering.alignment:
the mean cosine of each activation difference to their mean, and the mean pairwise cosine, per site) against the
effect measured on validation at the same site, over sites and datasets, with Spearman's rank correlation.

Effects: A/B datasets, P(+1) - P(-1) at each site (CAA's layer sweep); generation datasets, the validation effect at
the coefficient chosen at each site (protocol.select, the sweep's own choice). Pre-check values are means over the
seeds' pair subsets. Controls (random) are left out: their direction ignores the pairs.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from ..methods import is_control
from ..steering.alignment import PAIRWISE, PRECHECK, TO_MEAN
from ..steering.tasks import AB_METRIC, get_task, is_ab
from .protocol import ab_layer_sweep, select

#: a rank correlation at least this large, with p < 0.05, is called "predicts" in the report's sentence
PREDICTS = 0.5


def _fit_key(label: str) -> tuple[str, str] | None:
    """(model, dataset) of a fits.json label "model / dataset / method n=.. seed=.."."""
    parts = label.rsplit(" / ", 2)
    return (parts[0], parts[1]) if len(parts) == 3 else None


def precheck_points(rows: list[dict], fits: dict, settings: dict) -> list[dict]:
    """One point per (model, method, n_pairs, dataset, site): the pre-check (means over seeds) and the validation
    effect there."""
    custom = settings.get("custom_datasets")
    checks: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for label, fit in fits.items():
        where = _fit_key(label)
        if where is None or is_control(fit.get("method", "")) or not isinstance(fit.get(TO_MEAN), dict):
            continue
        for name in PRECHECK:
            for site, value in (fit.get(name) or {}).items():
                if value is not None:
                    checks[(*where, fit["method"], fit["n_pairs"], site)][name].append(float(value))
    validation = [r for r in rows if r["split"] == "validation"]
    effects: dict[tuple, float] = {}
    ab = {d for d in {r["dataset"] for r in validation} if is_ab(get_task(d, custom))}
    for (model, method, n), sites in ab_layer_sweep([r for r in validation if r["dataset"] in ab], AB_METRIC).items():
        for site, per in sites.items():
            for dataset, effect in per.items():
                effects[(model, dataset, method, n, site)] = effect
    limit = settings.get("selection", {}).get("max_fluency_cost", 1.0)
    for dataset in {r["dataset"] for r in validation} - ab:
        metric = get_task(dataset, custom).effect_metric
        chosen = select([r for r in validation if r["dataset"] == dataset], metric, limit)["per_site"]
        for (model, d, method, n, site), choice in chosen.items():
            effects[(model, d, method, n, site)] = choice.effect
    out = []
    for (model, dataset, method, n, site), values in sorted(checks.items()):
        effect = effects.get((model, dataset, method, n, site))
        if effect is None or not np.isfinite(effect):
            continue
        out.append({"model": model, "method": method, "n_pairs": n, "dataset": dataset, "site": site,
                    TO_MEAN: float(np.mean(values[TO_MEAN])) if values.get(TO_MEAN) else None,
                    PAIRWISE: float(np.mean(values[PAIRWISE])) if values.get(PAIRWISE) else None,
                    "effect": float(effect)})  # fmt: skip
    return out


def rank_correlation(x: list[float], y: list[float], n_boot: int = 1000, seed: int = 0) -> dict:
    """Spearman's rho of x and y with its p-value and a 95% bootstrap interval over points (NaN when < 3 points
    or a constant variable)."""
    from scipy.stats import spearmanr

    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return {"rho": float("nan"), "p": float("nan"), "lo": float("nan"), "hi": float("nan"), "n": len(a)}
    rho, p = spearmanr(a, b)
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(a), len(a))
        if np.ptp(a[idx]) > 0 and np.ptp(b[idx]) > 0:
            boots.append(spearmanr(a[idx], b[idx])[0])
    lo, hi = np.percentile(boots, [2.5, 97.5]) if boots else (float("nan"),) * 2
    return {"rho": float(rho), "p": float(p), "lo": float(lo), "hi": float(hi), "n": len(a)}


def correlation_table(points: list[dict], n_boot: int = 1000) -> list[dict]:
    """Per model, method and n_pairs (and pooled over n_pairs as n_pairs "all"): Spearman's rho of each pre-check
    measure against the effect over sites and datasets, and a plain verdict."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for p in points:
        groups[(p["model"], p["method"], p["n_pairs"])].append(p)
        groups[(p["model"], p["method"], "all")].append(p)
    out = []
    for (model, method, n), pts in sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0]))):
        if n == "all" and len({p["n_pairs"] for p in pts}) < 2:
            continue
        row: dict = {"model": model, "method": method, "n_pairs": n, "points": len(pts)}
        for name in PRECHECK:
            have = [p for p in pts if p[name] is not None]
            r = rank_correlation([p[name] for p in have], [p["effect"] for p in have], n_boot)
            row.update({f"rho_{name}": r["rho"], f"rho_{name}_lo": r["lo"], f"rho_{name}_hi": r["hi"],
                        f"p_{name}": r["p"]})  # fmt: skip
        row["verdict"] = verdict(row[f"rho_{TO_MEAN}"], row[f"p_{TO_MEAN}"])
        out.append(row)
    return out


def verdict(rho: float, p: float) -> str:
    """A plain sentence: does the pre-check (cosine to the mean) predict the effect here?"""
    if not np.isfinite(rho):
        return "cannot tell (fewer than 3 points or no spread)"
    if rho >= PREDICTS and p < 0.05:
        return f"predicts here (rho {rho:+.2f}, p {p:.2g})"
    if rho <= -PREDICTS and p < 0.05:
        return f"predicts the wrong way here (rho {rho:+.2f}, p {p:.2g})"
    return f"does not predict here (rho {rho:+.2f}, p {p:.2g})"


def precheck_sections(rows: list[dict], fits: dict, settings: dict, out, everything: dict, n_boot: int, stem) -> list:
    """Report sections (title, html): per model, the pre-check against the effect (figure, rank correlations and
    the verdict); adds `precheck_points` and `precheck_correlation` to `everything`."""
    from ..render import html
    from .figures import precheck_figure

    points = precheck_points(rows, fits, settings)
    if not points:
        return []
    table = correlation_table(points, n_boot)
    everything["precheck_points"], everything["precheck_correlation"] = points, table
    sections = []
    for model in sorted({p["model"] for p in points}):
        mine = [p for p in points if p["model"] == model]
        panels: dict[str, list[dict]] = defaultdict(list)
        for p in mine:
            panels[p["method"]].append(p)
        pooled = {r["method"]: r["verdict"] for r in table if r["model"] == model}  # the last (pooled) row wins
        path = out / f"{stem(model, 'precheck', 'effect')}.png"
        title = f"{model}: does the pairs' alignment predict the effect? (validation, sites x datasets)"
        precheck_figure(panels, pooled, "effect at the site (validation)", title, path)
        shown = [{k: v for k, v in r.items() if k != "model"} for r in table if r["model"] == model]
        text = html.paragraph(
            "Pre-check at fit time (Braun et al. 2505.22637): the mean cosine of each pair's activation difference "
            "to their mean, and the mean pairwise cosine, per site (in each vector's metadata). Effect: A/B "
            "datasets P(+1) - P(-1), generation datasets the effect at each site's chosen coefficient, both on "
            "validation. rho: Spearman's rank correlation over sites and datasets, 95% bootstrap interval over "
            "points; 'predicts' needs rho >= 0.5 with p < 0.05. Points share pairs and sites, so p is optimistic."
        )
        sections.append((f"{model}: steerability pre-check against the effect", html.join(
            text, html.table(shown), html.image(path, "pre-check"))))  # fmt: skip
    return sections

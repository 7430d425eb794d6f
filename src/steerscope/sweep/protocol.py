"""The protocol: choose on validation, report on test, with intervals over seeds and prompts.

`select` sees validation rows only (it refuses any other split), so the choice of coefficient and site
can never depend on a test item. `summarize` then reads the test cells at the chosen settings.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ..evaluate.stats import bootstrap_two_level_ci

FLUENCY = "fluency_cost"
SIDE_EFFECTS = ("delta_ce", "kl")


@dataclass(frozen=True)
class Choice:
    """A chosen setting and the validation numbers it was chosen on (means over seeds)."""

    site: str
    coefficient: float
    effect: float
    fluency_cost: float
    qualified: bool  # fluency cost within the limit


def _pick(options: list[Choice]) -> Choice:
    ok = [c for c in options if c.qualified]
    if ok:
        return max(ok, key=lambda c: (c.effect, -c.coefficient))
    return min(options, key=lambda c: (c.fluency_cost, c.coefficient))


def select(validation_rows: Iterable[dict], effect_metric: str, max_fluency_cost: float) -> dict:
    """Chosen settings from validation rows.

    Returns {"per_site": {(model, dataset, method, n_pairs, site): Choice},
             "best": {(model, dataset, method, n_pairs): Choice}} where the coefficient at a site is the one
    with the largest mean effect among those with mean fluency cost <= max_fluency_cost (else the one with
    the least cost), and the best site is chosen the same way among the per-site choices.
    """
    values: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in validation_rows:
        if row["split"] != "validation":
            raise ValueError(f"selection got a {row['split']!r} row; it must only ever see validation rows")
        if row["metric"] in (effect_metric, FLUENCY):
            key = (row["model"], row["dataset"], row["method"], row["n_pairs"], row["site"], row["coefficient"])
            values[key][row["metric"]].append(row["value"])
    options: dict[tuple, list[Choice]] = defaultdict(list)
    for (model, dataset, method, n, site, coef), metrics in values.items():
        effect = float(np.nanmean(metrics.get(effect_metric, [np.nan])))
        cost = float(np.nanmean(metrics.get(FLUENCY, [np.nan])))
        qualified = bool(np.isfinite(cost) and cost <= max_fluency_cost)
        options[(model, dataset, method, n, site)].append(Choice(site, coef, effect, cost, qualified))
    per_site = {key: _pick(opts) for key, opts in options.items()}
    by_setting: dict[tuple, list[Choice]] = defaultdict(list)
    for (model, dataset, method, n, _site), choice in per_site.items():
        by_setting[(model, dataset, method, n)].append(choice)
    return {"per_site": per_site, "best": {key: _pick(opts) for key, opts in by_setting.items()}}


def _grid(rows: list[dict]) -> np.ndarray:
    """Per-item values of several cells (one per seed) as [seeds, items]."""
    width = max(len(r["items"]) for r in rows)
    return np.array([list(r["items"]) + [np.nan] * (width - len(r["items"])) for r in rows], dtype=np.float64)


def aggregate(rows: list[dict], n_boot: int = 1000) -> dict:
    """Mean over seeds and items with a two-level bootstrap interval, for rows of one metric."""
    grid = _grid(rows)
    lo, hi = bootstrap_two_level_ci(grid, n_boot=n_boot)
    return {"value": float(np.nanmean(grid)), "ci": [lo, hi], "n_seeds": len(rows), "n_items": grid.shape[1]}


def paired_difference(rows: list[dict], reference_rows: list[dict], n_boot: int = 1000) -> dict | None:
    """Mean of (rows - reference_rows) over seeds and items, paired by seed rank and item index, with a
    two-level bootstrap interval; None when the two do not line up (other seed or item counts)."""
    a = _grid(sorted(rows, key=lambda r: r["seed"]))
    b = _grid(sorted(reference_rows, key=lambda r: r["seed"]))
    if a.shape != b.shape:
        return None
    lo, hi = bootstrap_two_level_ci(a - b, n_boot=n_boot)
    return {"value": float(np.nanmean(a - b)), "ci": [lo, hi], "n_seeds": a.shape[0], "n_items": a.shape[1]}


def cells_at(rows: list[dict], **where) -> dict[str, list[dict]]:
    """Rows matching `where` (coefficient compared with a tolerance), grouped by metric."""
    out: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        if all(abs(r[k] - v) < 1e-9 if k == "coefficient" else r[k] == v for k, v in where.items()):
            out[r["metric"]].append(r)
    return out


def summarize_cells(rows: list[dict], metrics: Iterable[str], n_boot: int = 1000) -> dict:
    """{metric: aggregate} for the metrics present in `rows`."""
    grouped = cells_at(rows)
    return {m: aggregate(grouped[m], n_boot) for m in metrics if grouped.get(m)}


# --- A/B datasets (CAA) ---------------------------------------------------------------------------------

#: CAA's multipliers: the layer sweep reads P(behaviour) at -1 and +1 (validation); the curve adds -0.5, 0, +0.5
SELECT_MULTIPLIERS = (-1.0, 1.0)
CAA_MULTIPLIERS = (-1.0, -0.5, 0.0, 0.5, 1.0)


def ab_multipliers(coefficients: Iterable[float]) -> list[float]:
    """The test multipliers of an A/B dataset: CAA's -1, -0.5, 0, +0.5, +1 and +-c for every swept coefficient."""
    values = {*CAA_MULTIPLIERS, *(float(c) for c in coefficients), *(-float(c) for c in coefficients)}
    return sorted(values)


@dataclass(frozen=True)
class SiteChoice:
    """The site CAA's layer sweep picks, its validation effect (mean over datasets) and each dataset's."""

    site: str
    effect: float
    per_dataset: dict[str, float]


def ab_layer_sweep(validation_rows: Iterable[dict], metric: str) -> dict[tuple, dict[str, dict[str, float]]]:
    """{(model, method, n_pairs): {site: {dataset: P(+1) - P(-1)}}} from validation rows (means over seeds and
    items at multipliers +1 and -1)."""
    values: dict[tuple, list[float]] = defaultdict(list)
    for row in validation_rows:
        if row["split"] != "validation":
            raise ValueError(f"selection got a {row['split']!r} row; it must only ever see validation rows")
        if row["metric"] == metric and row["coefficient"] in SELECT_MULTIPLIERS:
            key = (row["model"], row["method"], row["n_pairs"], row["site"], row["dataset"], row["coefficient"])
            values[key].append(float(np.nanmean(row["items"])))
    sweep: dict[tuple, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for (model, method, n, site, dataset, coef), _ in values.items():
        if coef != SELECT_MULTIPLIERS[1]:
            continue
        low = values.get((model, method, n, site, dataset, SELECT_MULTIPLIERS[0]))
        if low:
            high = values[(model, method, n, site, dataset, coef)]
            sweep[(model, method, n)][site][dataset] = float(np.mean(high) - np.mean(low))
    return {k: dict(v) for k, v in sweep.items()}


def select_ab_sites(validation_rows: Iterable[dict], metric: str) -> dict[tuple, SiteChoice]:
    """CAA's layer choice, one site for all behaviours: per (model, method, n_pairs), the site whose validation
    effect P(+1) - P(-1), averaged over the A/B datasets measured there, is largest."""
    out = {}
    for key, sites in ab_layer_sweep(validation_rows, metric).items():
        site, per = max(sites.items(), key=lambda kv: (float(np.mean(list(kv[1].values()))), kv[0]))
        out[key] = SiteChoice(site, float(np.mean(list(per.values()))), dict(per))
    return out

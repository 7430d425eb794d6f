"""Per-item effects: for which inputs a vector works, and for which it pushes the wrong way (Tan et al. 2407.12404).

A/B datasets: each test item's least-squares slope, against the multipliers measured at the cell's site
(multiplier 0 is the unsteered cell), of logit(matching) - logit(other) -- Tan et al.'s per-item steerability --
and of P(matching). Generation datasets: each test prompt's score (the dataset's effect metric) steered minus
unsteered, at the cell's coefficient. An item is anti-steerable where its effect is below zero; the
anti-steerable fraction is the share over seeds and items, with a two-level bootstrap interval (seeds and
items resampled). Ties (effect exactly 0: a binary score that did not move) are counted apart.

Everything here is a function of a results store's rows (and the datasets' test items, to name them): the
sweep writes `per_item.csv` into its run folder from it, and the report draws its histograms from it.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..core.io import write_csv
from ..evaluate.stats import bootstrap_indices
from ..steering.tasks import AB_LOGIT_METRIC, AB_METRIC, get_task, is_ab

PER_ITEM_NAME = "per_item.csv"
BASELINES = ("unsteered", "prompting")
#: the columns that name one setting (one histogram, one anti-steerable fraction)
SETTING = ("kind", "model", "dataset", "method", "n_pairs", "site", "coefficient")
_CLIP = 1e-6  # P clipped to [1e-6, 1 - 1e-6] where a store holds no logit difference (written before it was kept)


def item_slopes(multipliers: Sequence[float], values: np.ndarray) -> np.ndarray:
    """Least-squares slope of each column of `values` [n_multipliers, n_items] against `multipliers` (NaN where a
    column has fewer than two finite values or its multipliers are all equal)."""
    x = np.asarray(multipliers, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    if y.ndim != 2 or y.shape[0] != len(x):
        raise ValueError(f"expected values [{len(x)} multipliers, items], got shape {y.shape}")
    ok = np.isfinite(y)
    n = ok.sum(0)
    xs = np.where(ok, x[:, None], 0.0)
    ys = np.where(ok, y, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx, my = xs.sum(0) / n, ys.sum(0) / n
        cov = (np.where(ok, (x[:, None] - mx) * (y - my), 0.0)).sum(0)
        var = (np.where(ok, (x[:, None] - mx) ** 2, 0.0)).sum(0)
        slope = cov / var
    return np.where((n >= 2) & (var > 0), slope, np.nan)


def anti_steerable_fraction(effects: np.ndarray, n_boot: int = 1000) -> dict:
    """Share of items whose effect is below zero over [seeds, items] (NaN ignored), with a two-level bootstrap
    interval; also the share of ties (exactly zero) and the mean effect."""
    e = np.atleast_2d(np.asarray(effects, dtype=np.float64))
    finite = np.isfinite(e)
    if not finite.any():
        return {"value": float("nan"), "ci": [float("nan")] * 2, "tied": float("nan"), "mean_effect": float("nan"),
                "n_seeds": e.shape[0], "n_items": e.shape[1]}  # fmt: skip
    below = np.where(finite, (e < 0).astype(np.float64), np.nan)
    lo, hi = _two_level_interval(below, n_boot)
    return {
        "value": float(np.nanmean(below)),
        "ci": [lo, hi],
        "tied": float(np.nanmean(np.where(finite, (e == 0).astype(np.float64), np.nan))),
        "mean_effect": float(np.nanmean(e)),
        "n_seeds": e.shape[0],
        "n_items": e.shape[1],
    }


def _two_level_interval(values: np.ndarray, n_boot: int, seed: int = 0) -> tuple[float, float]:
    """95% interval of the grand mean of [seeds, items] (NaN ignored), resampling seeds and items (the same item
    draw for every seed); a replicate that drew only NaN is left out."""
    seeds = bootstrap_indices(values.shape[0], n_boot, seed)
    items = bootstrap_indices(values.shape[1], n_boot, seed + 1)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.array([np.nanmean(values[g][:, i]) for g, i in zip(seeds, items, strict=True)])
    lo, hi = np.nanpercentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), _CLIP, 1 - _CLIP)
    return np.log(p) - np.log1p(-p)


def ab_item_effects(rows: list[dict], texts: dict[str, list[str]]) -> list[dict]:
    """One row per steered A/B test setting, seed and item: its slopes of the logit difference (`effect`) and of
    P (`effect_p`) against the multipliers measured (the unsteered cell is multiplier 0). `texts`: each
    dataset's test items (the questions), in the store's item order."""
    test = [r for r in rows if r["split"] == "test" and r["metric"] in (AB_METRIC, AB_LOGIT_METRIC)]
    values: dict[tuple, dict[float, dict[str, list]]] = defaultdict(lambda: defaultdict(dict))
    unsteered: dict[tuple, dict[str, list]] = defaultdict(dict)
    for r in test:
        if r["method"] == "unsteered":
            unsteered[(r["model"], r["dataset"])][r["metric"]] = r["items"]
        elif r["method"] not in BASELINES:
            key = (r["model"], r["dataset"], r["method"], r["n_pairs"], r["site"], r["seed"])
            values[key][float(r["coefficient"])][r["metric"]] = r["items"]
    out = []
    for (model, dataset, method, n, site, seed), by_m in sorted(values.items()):
        curve = dict(by_m)
        if (model, dataset) in unsteered and 0.0 not in curve:
            curve[0.0] = unsteered[(model, dataset)]
        multipliers = sorted(curve)
        p = np.array([curve[m][AB_METRIC] for m in multipliers], dtype=np.float64)
        logit = np.array(
            [curve[m].get(AB_LOGIT_METRIC) or _logit(np.asarray(curve[m][AB_METRIC], dtype=np.float64))
             for m in multipliers], dtype=np.float64)  # fmt: skip
        slope, slope_p = item_slopes(multipliers, logit), item_slopes(multipliers, p)
        names = texts.get(dataset, [])
        for i in range(p.shape[1]):
            out.append(
                {"kind": "ab", "model": model, "dataset": dataset, "method": method, "n_pairs": n, "site": site,
                 "coefficient": None, "seed": seed, "item": i, "text": names[i] if i < len(names) else "",
                 "effect": float(slope[i]), "effect_p": float(slope_p[i]), "steered": None, "unsteered": None,
                 "multipliers": " ".join(f"{m:g}" for m in multipliers), "effect_score": None}  # fmt: skip
            )
    return out


#: the continuous score stored beside a binary effect metric (a share that cannot move is a tie; this one moves)
CONTINUOUS = {"positive": "sentiment", "keyword_rate": "topic_similarity"}


def generation_item_effects(rows: list[dict], texts: dict[str, list[str]], metrics: dict[str, str]) -> list[dict]:
    """One row per steered generation test cell and prompt: its score steered minus unsteered (`effect`), and the
    same for the continuous score beside a binary one where the cell holds it (`effect_score`: VADER's compound
    beside the share positive, topic similarity beside a keyword rate). `texts`: each dataset's test prompts;
    `metrics`: each dataset's effect metric."""
    scores = {(r["model"], r["dataset"], r["method"], r["n_pairs"], r["site"], r["coefficient"], r["seed"]): r["items"]
              for r in rows if r["split"] == "test" and r["metric"] == CONTINUOUS.get(metrics.get(r["dataset"], ""))}
    test = [r for r in rows if r["split"] == "test" and r["metric"] == metrics.get(r["dataset"])]
    base = {(r["model"], r["dataset"]): r["items"] for r in test if r["method"] == "unsteered"}
    base_scores = {k[:2]: v for k, v in scores.items() if k[2] == "unsteered"}
    out = []
    for r in sorted(test, key=lambda r: tuple(str(r[k]) for k in ("model", "dataset", "method", "n_pairs", "site",
                                                                      "coefficient", "seed"))):  # fmt: skip
        unsteered = base.get((r["model"], r["dataset"]))
        if r["method"] in BASELINES or unsteered is None or len(unsteered) != len(r["items"]):
            continue
        names = texts.get(r["dataset"], [])
        key = (r["model"], r["dataset"], r["method"], r["n_pairs"], r["site"], r["coefficient"], r["seed"])
        score, score_base = scores.get(key), base_scores.get(key[:2])
        paired = score is not None and score_base is not None and len(score) == len(score_base) == len(r["items"])
        for i, (s, u) in enumerate(zip(r["items"], unsteered, strict=True)):
            out.append(
                {"kind": "generation", "model": r["model"], "dataset": r["dataset"], "method": r["method"],
                 "n_pairs": r["n_pairs"], "site": r["site"], "coefficient": r["coefficient"], "seed": r["seed"],
                 "item": i, "text": names[i] if i < len(names) else "", "effect": float(s) - float(u),
                 "effect_p": None, "steered": float(s), "unsteered": float(u), "multipliers": None,
                 "effect_score": float(score[i]) - float(score_base[i]) if paired else None}  # fmt: skip
            )
    return out


def per_item_table(rows: list[dict], custom_datasets: dict | None = None) -> list[dict]:
    """Every steered test setting's per-item effects (A/B and generation datasets alike), one row per seed and
    item: what `per_item.csv` holds."""
    datasets = sorted({r["dataset"] for r in rows})
    tasks = {d: get_task(d, custom_datasets) for d in datasets}
    ab = {d: [it.question for it in t.split_items()["test"]] for d, t in tasks.items() if is_ab(t)}
    gen = {d: t.split_prompts()["test"] for d, t in tasks.items() if not is_ab(t)}
    metrics = {d: t.effect_metric for d, t in tasks.items() if not is_ab(t)}
    out = ab_item_effects([r for r in rows if r["dataset"] in ab], ab)
    return out + generation_item_effects([r for r in rows if r["dataset"] in gen], gen, metrics)


def setting_key(row: dict) -> tuple:
    return tuple(row[k] for k in SETTING)


def effects_by_setting(item_rows: list[dict]) -> dict[tuple, np.ndarray]:
    """{setting: effects [seeds, items]} from per-item rows (seeds in ascending order)."""
    grouped: dict[tuple, dict[int, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for r in item_rows:
        grouped[setting_key(r)][r["seed"]][r["item"]] = r["effect"]
    out = {}
    for key, seeds in grouped.items():
        width = max(max(items) + 1 for items in seeds.values())
        out[key] = np.array([[seeds[s].get(i, np.nan) for i in range(width)] for s in sorted(seeds)], dtype=float)
    return out


def anti_steerable_table(item_rows: list[dict], n_boot: int = 1000) -> list[dict]:
    """One row per setting: the anti-steerable fraction with its interval, the ties and the mean effect, and the
    share pushed the wrong way on the continuous score beside a binary metric (`score_wrong_way`) where kept."""
    out = []
    with_score = [{**r, "effect": r["effect_score"]} for r in item_rows if r.get("effect_score") is not None]
    scored = effects_by_setting(with_score)
    for key, effects in sorted(effects_by_setting(item_rows).items(), key=lambda kv: tuple(map(str, kv[0]))):
        frac = anti_steerable_fraction(effects, n_boot)
        score = anti_steerable_fraction(scored[key], n_boot) if key in scored else None
        out.append({**dict(zip(SETTING, key, strict=True)), "anti_steerable": frac["value"],
                    "anti_steerable_lo": frac["ci"][0], "anti_steerable_hi": frac["ci"][1], "tied": frac["tied"],
                    "mean_effect": frac["mean_effect"], "n_seeds": frac["n_seeds"], "n_items": frac["n_items"],
                    "score_wrong_way": score["value"] if score else None,
                    "score_wrong_way_lo": score["ci"][0] if score else None,
                    "score_wrong_way_hi": score["ci"][1] if score else None})  # fmt: skip
    return out


def worst_items(item_rows: list[dict], key: tuple, limit: int = 10) -> list[dict]:
    """The items of one setting with the lowest mean effect over seeds (the most anti-steerable first)."""
    per: dict[int, list[dict]] = defaultdict(list)
    for r in item_rows:
        if setting_key(r) == key:
            per[r["item"]].append(r)
    ranked = []
    for i, rs in per.items():
        effects = [r["effect"] for r in rs if np.isfinite(r["effect"])]
        if effects:
            mean = float(np.mean(effects))
            wrong = sum(e < 0 for e in effects)
            ranked.append({"item": i, "text": rs[0]["text"], "mean_effect": mean, "seeds_wrong_way": wrong,
                           "n_seeds": len(effects)})  # fmt: skip
    return sorted(ranked, key=lambda r: r["mean_effect"])[:limit]


def write_per_item(store, folder, custom_datasets: dict | None = None) -> None:
    """per_item.csv in a sweep's run folder from its store (nothing when no steered test cell is stored)."""
    rows = per_item_table(store.rows(), custom_datasets)
    if rows:
        write_csv(Path(folder) / PER_ITEM_NAME, rows)

"""The report of A/B datasets (CAA's behaviour benchmark): the table of P(behaviour-matching answer) by
multiplier, CAA's figure (P against the multiplier, one line per behaviour), the layer sweep that chose the site,
and the side effects, from a sweep's results store (sweep/ab.py wrote it).

Every number is a test cell at the site chosen on validation (protocol.select_ab_sites, the sweep's own choice):
means over seeds and test items with two-level bootstrap intervals; the effect P(+1) - P(-1) is paired by item.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from ..render import html
from ..steering.tasks import AB_METRIC
from .figures import ab_layer_figure, caa_figure
from .protocol import SELECT_MULTIPLIERS, SIDE_EFFECTS, ab_layer_sweep, aggregate, paired_difference, select_ab_sites

BASELINE = "unsteered"


def _cells(rows: list[dict], **where) -> list[dict]:
    return [r for r in rows if all(abs(r[k] - v) < 1e-9 if k == "coefficient" else r[k] == v for k, v in where.items())]


def measured_settings(rows: list[dict], model: str) -> list[tuple[str, int, str]]:
    """(method, n_pairs, site) of every steered test curve of a model: a fitted method at the site the layer sweep
    chose on validation (the same choice the sweep made), a control (random) at the site it was measured at."""
    validation = [r for r in rows if r["split"] == "validation" and r["model"] == model]
    chosen = select_ab_sites(validation, AB_METRIC)
    out = set()
    for r in rows:
        if r["split"] == "test" and r["model"] == model and r["method"] != BASELINE:
            choice = chosen.get((model, r["method"], r["n_pairs"]))
            if choice is None or choice.site == r["site"]:
                out.add((r["method"], r["n_pairs"], r["site"]))
    return sorted(out)


def caa_table(rows: list[dict], model: str, n_boot: int) -> list[dict]:
    """One row per method, n_pairs, behaviour and multiplier at its test site: P with its interval (multiplier 0:
    the unsteered cell) and the side effects there."""
    test = [r for r in rows if r["split"] == "test" and r["model"] == model]
    out = []
    for method, n, site in measured_settings(rows, model):
        for dataset in sorted({r["dataset"] for r in test}):
            base = _cells(test, method=BASELINE, dataset=dataset, metric=AB_METRIC)
            at = dict(method=method, n_pairs=n, site=site, dataset=dataset)
            for m in sorted({r["coefficient"] for r in _cells(test, **at)} | {0.0}):
                cells = base if m == 0 else _cells(test, metric=AB_METRIC, coefficient=m, **at)
                if not cells:
                    continue
                p = aggregate(cells, n_boot)
                row = {"model": model, **at, "multiplier": m, "p": p["value"], "p_lo": p["ci"][0], "p_hi": p["ci"][1]}
                row.update(n_seeds=p["n_seeds"], n_items=p["n_items"])
                for metric in SIDE_EFFECTS:
                    found = _cells(test, metric=metric, coefficient=m, **at) if m != 0 else []
                    row[metric] = aggregate(found, n_boot)["value"] if found else None
                out.append(row)
    return out


def effects(rows: list[dict], model: str, n_boot: int) -> list[dict]:
    """P(+1) - P(-1) per method, n_pairs and behaviour at its test site, paired by item, with its interval."""
    test = [r for r in rows if r["split"] == "test" and r["model"] == model and r["metric"] == AB_METRIC]
    validation = [r for r in rows if r["split"] == "validation" and r["model"] == model]
    chosen = select_ab_sites(validation, AB_METRIC)
    out = []
    for method, n, site in measured_settings(rows, model):
        for dataset in sorted({r["dataset"] for r in test}):
            at = dict(method=method, n_pairs=n, site=site, dataset=dataset)
            lo, hi = (_cells(test, coefficient=m, **at) for m in SELECT_MULTIPLIERS)
            diff = paired_difference(hi, lo, n_boot) if lo and hi else None
            if diff:
                choice = chosen.get((model, method, n))
                row = {"model": model, **at, "effect": diff["value"], "effect_lo": diff["ci"][0]}
                row.update(effect_hi=diff["ci"][1], n_items=diff["n_items"])
                out.append({**row, "validation_effect": choice.per_dataset.get(dataset) if choice else None})
    return out


def _wide(table: list[dict], effect_rows: list[dict]) -> list[dict]:
    """The CAA table as one row per behaviour: P at each multiplier ("p [lo, hi]") and the effect."""
    grouped: dict[tuple, dict] = defaultdict(dict)
    for r in table:
        key = (r["method"], r["n_pairs"], r["site"], r["dataset"])
        grouped[key]["n test items"] = r["n_items"]
        grouped[key][f"P at {r['multiplier']:+g}"] = f"{r['p']:.3f} [{r['p_lo']:.3f}, {r['p_hi']:.3f}]"
    for e in effect_rows:
        key = (e["method"], e["n_pairs"], e["site"], e["dataset"])
        grouped[key]["P(+1) - P(-1)"] = f"{e['effect']:+.3f} [{e['effect_lo']:+.3f}, {e['effect_hi']:+.3f}]"
    return [{"method": k[0], "n_pairs": k[1], "site": k[2], "behaviour": k[3], **v} for k, v in grouped.items()]


def behaviour_sections(rows: list[dict], out: Path, everything: dict, n_boot: int, stem) -> list:
    """Report sections (title, html) for the A/B rows of every model; adds its tables to `everything`."""
    sections = []
    for model in sorted({r["model"] for r in rows}):
        table, effect_rows = caa_table(rows, model, n_boot), effects(rows, model, n_boot)
        everything.setdefault("caa_table", []).extend(table)
        everything.setdefault("caa_effects", []).extend(effect_rows)
        validation = [r for r in rows if r["split"] == "validation" and r["model"] == model]
        sweep = ab_layer_sweep(validation, AB_METRIC)
        sections.append((f"{model}, A/B behaviours: what was measured", _protocol_text()))
        sections.append(
            (f"{model}, A/B behaviours: P(behaviour-matching answer) on test", html.table(_wide(table, effect_rows)))
        )
        for method, n, site in measured_settings(rows, model):
            curves = defaultdict(list)
            for r in table:
                if (r["method"], r["n_pairs"]) == (method, n):
                    curves[r["dataset"]].append(r)
            path = out / f"{stem(model, f'caa_{method}_n{n}')}.png"
            caa_figure(curves, f"{model}: {method} (n={n}) at {site}", path)
            sections.append((f"{model}, A/B: {method} n={n}, P against the multiplier (test)", html.image(path, "CAA")))
            if (model, method, n) in sweep:
                path = out / f"{stem(model, f'ab_layer_sweep_{method}_n{n}')}.png"
                ab_layer_figure(sweep[(model, method, n)], site, f"{model}: {method} (n={n}), layer sweep", path)
                sections.append((f"{model}, A/B: {method} n={n}, layer sweep (validation)", html.image(path, "layers")))
    return sections


def _protocol_text() -> html.Html:
    return html.paragraph(
        "P(behaviour-matching answer): the two answer letters' next-token probabilities after the reply's opening "
        "'(' (chat template where the model has one), renormalised over the two. Vectors from the train items' "
        "answer-letter activations, added at the reply's opening (the tokens after the instruction, as CAA does), "
        "multiplier 0 unsteered. One site per model, method and n_pairs for every behaviour, chosen on validation "
        "items (largest mean P(+1) - P(-1), CAA's layer sweep); test items are disjoint from both by question. "
        "Intervals: 95% bootstrap over seeds and items; the effect is paired by item. Side effects (delta CE, KL) "
        "on natural text with the vector at every position."
    )

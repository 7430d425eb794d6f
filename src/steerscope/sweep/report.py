"""`steerscope report RESULTS`: figures, tables and a page from a sweep's results store.

Every number comes from test cells at the settings chosen on validation rows (the same `select` the
sweep used), with two-level bootstrap intervals over seeds (pair subsets) and prompts. Writes into
RESULTS/report/: summary.csv (effect, fluency, side effects and the cost of finding each intervention
per method and n_pairs), comparison.csv (methods at the reference method's coefficient: matched norm),
baselines.csv, selection.csv, grid.csv (every validation cell: effect, topic relevance and fluency cost by site
and coefficient), report.json, the figures sample_complexity.png, amortized_cost.png (effect against total tokens
and FLOPs, an SAE's training included), per_item.csv and anti_steerable.csv with a per_item.png per dataset (who the
vector fails: sweep/per_item.py), tradeoff.png, layer_sweep.png, layer_coefficient.png (the grid, ActAdd's
figure), and index.html. A/B datasets (CAA) get their own sections (sweep/ab_report.py).
The store is opened read-only; the report folder is a core.runs.RunFolder (written in `<report>.partial/`,
swapped in when complete), and an earlier report is replaced on each run since it is derived output.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from ..core.io import atomic_write_text, write_csv, write_json
from ..core.runs import OutputExistsError, RunFolder, read_settings, slug
from ..evaluate.store import NotAResultStoreError, ResultStore
from ..methods import COST_METRICS, is_control
from ..render import html
from ..steering.tasks import get_task, is_ab
from .ab_report import behaviour_sections
from .figures import (
    amortized_cost_figure,
    layer_coefficient_figure,
    layer_figure,
    sample_complexity_figure,
    tradeoff_figure,
)
from .files import FITS_NAME, STORE_NAME
from .panel import PANEL_NAME, panel_sections
from .per_item import per_item_table
from .per_item_report import nan_to_none, per_item_sections
from .precheck import precheck_sections
from .protocol import FLUENCY, SIDE_EFFECTS, cells_at, paired_difference, select, summarize_cells

BASELINE_METHODS = ("unsteered", "prompting")
EFFECT_LABELS = {"positive": "share of positive completions", "keyword_rate": "share of completions with a keyword"}
TOPIC = "topic_similarity"  # topic relevance, measured beside a keyword rate when the dataset names a topic
#: cost columns of the tables (means over seeds): the pairs, and the total with an SAE's training included
SHOWN_COSTS = ("cost_pair_tokens", "cost_sae_tokens", "cost_total_tokens", "cost_total_flops", "cost_total_seconds")
EXAMPLES = 4


REPORT_KIND = "sweep report"  # the settings record's `kind`: what marks a folder as a report this module wrote


def _store_path(results: str | Path) -> Path:
    results = Path(results)
    path = results / STORE_NAME if results.is_dir() else results
    if not path.is_file():
        raise NotAResultStoreError(
            f"no sweep results at {path}; give the folder a sweep wrote (it holds {STORE_NAME}) or that file"
        )
    return path


def _is_report(folder: Path) -> bool:
    """Whether `folder` is a report an earlier `steerscope report` wrote (so it may be replaced)."""
    try:
        record = read_settings(folder)
    except (OSError, ValueError):
        return False
    if record is not None:
        return record.get("kind") == REPORT_KIND
    return (folder / "report.json").is_file() and (folder / "index.html").is_file()  # written before the record


def _report_folder(path: Path, out: Path, n_boot: int, overwrite: bool) -> RunFolder:
    """The report's run folder: written in `<out>.partial/` and swapped in when complete.

    A report is derived output: an existing `out` that holds an earlier report is replaced (atomically, once
    the new one is complete) on every run, so `steerscope report RESULTS` can be rerun as it is; an existing
    `out` that is not a report is refused unless `overwrite`. A folder holding the results read is always
    refused. An unfinished `<out>.partial/` of a killed report is discarded and written anew.
    """
    store = path.resolve()
    if store.is_relative_to(out.resolve()):
        raise OutputExistsError(f"the report folder {out} holds the results it reports ({path}); choose another --out")
    if out.exists() and not overwrite and not (out.is_dir() and _is_report(out)):
        raise OutputExistsError(
            f"output folder {out} already exists and is not a steerscope sweep report; "
            "pass --overwrite to replace it, or choose another --out"
        )
    settings = {"kind": REPORT_KIND, "results": str(store), "n_boot": n_boot}
    return RunFolder(out, settings, overwrite=True, restart=True)


def _flat(prefix: str, summary: dict | None) -> dict:
    if not summary:
        return {prefix: None, f"{prefix}_lo": None, f"{prefix}_hi": None}
    return {prefix: summary["value"], f"{prefix}_lo": summary["ci"][0], f"{prefix}_hi": summary["ci"][1]}


class _Group:
    """The rows of one model and dataset, and what was chosen for it."""

    def __init__(self, model: str, dataset: str, rows: list[dict], settings: dict, reference: str, n_boot: int):
        self.model, self.dataset, self.n_boot, self.reference = model, dataset, n_boot, reference
        self.task = get_task(dataset, settings.get("custom_datasets"))
        self.effect = self.task.effect_metric
        self.validation = [r for r in rows if r["split"] == "validation"]
        self.test = [r for r in rows if r["split"] == "test"]
        limit = settings.get("selection", {}).get("max_fluency_cost", 1.0)
        chosen = select(self.validation, self.effect, limit)  # baselines have nothing to choose: drop them
        self.choices = {
            kind: {k: v for k, v in t.items() if k[2] not in BASELINE_METHODS} for kind, t in chosen.items()
        }
        topic = [TOPIC] if getattr(self.task, "topic", "") and self.effect != TOPIC else []
        self.metrics = [
            self.effect,
            *topic,
            FLUENCY,
            *SIDE_EFFECTS,
            *(["sentiment"] if self.effect == "positive" else []),
        ]

    def measured(self, method: str, n: int, site: str, coefficient: float) -> dict:
        rows = cells_at(self.test, method=method, n_pairs=n, site=site, coefficient=coefficient)
        return summarize_cells([r for v in rows.values() for r in v], [*self.metrics, *COST_METRICS], self.n_boot)

    def chosen(self) -> list[dict]:
        """Per method and n_pairs: the chosen site and coefficient and the test numbers there."""
        out = []
        for (model, dataset, method, n), best in sorted(self.choices["best"].items(), key=lambda kv: kv[0][2:]):
            if (model, dataset) != (self.model, self.dataset):
                continue
            coef = self.choices["per_site"][(model, dataset, method, n, best.site)].coefficient
            out.append(
                {
                    "method": method,
                    "n_pairs": n,
                    "site": best.site,
                    "coefficient": coef,
                    "validation_effect": best.effect,
                    "validation_fluency_cost": best.fluency_cost,
                    "within_fluency_limit": best.qualified,
                    **self.measured(method, n, best.site, coef),
                }
            )
        return out

    def baselines(self, chosen: list[dict]) -> dict[str, dict]:
        out = {
            m: summarize_cells([r for r in self.test if r["method"] == m], self.metrics, self.n_boot)
            for m in BASELINE_METHODS
        }
        for control in dict.fromkeys(c["method"] for c in chosen if is_control(c["method"])):
            first = next(c for c in chosen if c["method"] == control)
            out[control] = {k: first[k] for k in self.metrics if k in first}
        return {k: v for k, v in out.items() if v}

    def matched(self) -> list[dict]:
        """Each method at the reference method's chosen site and coefficient for the same n (same norm)."""
        out = []
        for (model, dataset, method, n), best in self.choices["best"].items():
            if (model, dataset, method) != (self.model, self.dataset, self.reference):
                continue
            coef = self.choices["per_site"][(model, dataset, method, n, best.site)].coefficient
            where = {"n_pairs": n, "site": best.site, "coefficient": coef, "metric": self.effect}
            reference = cells_at(self.test, method=method, **where).get(self.effect, [])
            for other in sorted({r["method"] for r in self.test if r["n_pairs"] == n} - set(BASELINE_METHODS)):
                found = self.measured(other, n, best.site, coef)
                if found:
                    rows = cells_at(self.test, method=other, **where).get(self.effect, [])
                    delta = paired_difference(rows, reference, self.n_boot) if other != method else None
                    row = {"n_pairs": n, "site": best.site, "coefficient": coef, "method": other, **found}
                    out.append({**row, f"{self.effect}_minus_{method}": delta})
        return sorted(out, key=lambda r: (r["n_pairs"], r["method"]))

    def tradeoff(self, chosen: list[dict]) -> tuple[dict, dict]:
        """Validation effect and fluency cost per coefficient for each method at its largest n and chosen site."""
        lines = {}
        for method in sorted({c["method"] for c in chosen}):
            pick = max((c for c in chosen if c["method"] == method), key=lambda c: c["n_pairs"])
            points = defaultdict(lambda: defaultdict(list))
            for r in self.validation:
                if (r["method"], r["n_pairs"], r["site"]) == (method, pick["n_pairs"], pick["site"]):
                    points[r["coefficient"]][r["metric"]].append(r["value"])
            lines[f"{method} (n={pick['n_pairs']})"] = [
                {"coefficient": c, "effect": _mean(m[self.effect]), "fluency_cost": _mean(m[FLUENCY])}
                for c, m in points.items()
                if m.get(self.effect) and m.get(FLUENCY)
            ]
        base = {}
        for m in BASELINE_METHODS:
            rows = [r for r in self.validation if r["method"] == m]
            by = {r["metric"]: r["value"] for r in rows}
            if self.effect in by:
                base[m] = {"effect": by[self.effect], "fluency_cost": by.get(FLUENCY, 0.0)}
        return lines, base

    def grid(self) -> list[dict]:
        """Every validation cell of each method at its largest n: the effect, topic relevance (when measured)
        and fluency cost at every site and coefficient, means over seeds and prompts with 95% intervals (the
        layer x coefficient figure: ActAdd's)."""
        out = []
        metrics = [m for m in (self.effect, TOPIC, FLUENCY) if any(r["metric"] == m for r in self.validation)]
        for method in sorted({r["method"] for r in self.validation} - set(BASELINE_METHODS)):
            n = max(r["n_pairs"] for r in self.validation if r["method"] == method)
            rows = [r for r in self.validation if (r["method"], r["n_pairs"]) == (method, n)]
            for site, coef in sorted({(r["site"], r["coefficient"]) for r in rows}):
                at = [r for r in rows if (r["site"], r["coefficient"]) == (site, coef)]
                cell = summarize_cells(at, metrics, self.n_boot)
                out.append({"method": method, "n_pairs": n, "site": site, "coefficient": coef, **cell})
        return out

    def layers(self) -> dict[str, list[dict]]:
        """Test effect at every site (each at its own chosen coefficient), per method at its largest n."""
        lines = defaultdict(list)
        largest = {}
        for _, _, method, n, _site in self.choices["per_site"]:
            largest[method] = max(largest.get(method, 0), n)
        for (model, dataset, method, n, site), choice in self.choices["per_site"].items():
            if (model, dataset) != (self.model, self.dataset) or n != largest[method]:
                continue
            found = self.measured(method, n, site, choice.coefficient)
            if self.effect in found:
                lines[f"{method} (n={n})"].append({"site": site, "effect": found[self.effect]})
        return lines


def _grid_row(cell: dict, panels: list[tuple[str, str]]) -> dict:
    """One row of grid.csv: the setting and each panel's metric with its interval."""
    row = {k: cell[k] for k in ("method", "n_pairs", "site", "coefficient")}
    for metric, _ in panels:
        row.update(_flat(metric, cell.get(metric)))
    first = next((cell[m] for m, _ in panels if m in cell), {})
    return {**row, "n_seeds": first.get("n_seeds"), "n_prompts": first.get("n_items")}


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values))


def sweep_report(
    results: str | Path, out: str | Path | None = None, n_boot: int = 1000, overwrite: bool = False
) -> Path:
    """Write the report of a sweep; returns the folder (default RESULTS/report).

    The results are only read (the store is opened read-only; a file that is not a steerscope results store is a
    NotAResultStoreError). The report is written in `<out>.partial/` and moved into place when complete, so a
    killed report never leaves a mix of old and new files. An earlier report in `out` is replaced on every run
    (a report is derived output); any other existing `out` is refused unless `overwrite`.
    """
    path = _store_path(results)
    out = Path(out) if out else path.parent / "report"
    with ResultStore(path, read_only=True) as store:  # first: a foreign file is refused before anything is written
        settings = store.settings()
        rows = store.rows()
        config = _read_json(path.parent / "config.json")
        fits = _read_json(path.parent / FITS_NAME)
        folder = _report_folder(path, out, n_boot, overwrite)
        work = folder.path()
        custom = settings.get("custom_datasets")
        ab = {d for d in {r["dataset"] for r in rows} if is_ab(get_task(d, custom))}  # CAA items: their own sections
        groups = sorted({(r["model"], r["dataset"]) for r in rows if r["dataset"] not in ab})
        sections, everything = [], {"summary": [], "comparison": [], "baselines": [], "selection": [], "grid": []}
        for model, dataset in groups:
            g = _Group(
                model,
                dataset,
                [r for r in rows if (r["model"], r["dataset"]) == (model, dataset)],
                settings,
                config.get("reference_method", "mean_diff"),
                n_boot,
            )
            sections += _group_report(g, store, work, everything, len(groups) > 1)
            fitted = _fit_rows(fits, model, dataset)
            if fitted:
                sections.append((f"{model}, {dataset}: what was fitted", html.table(fitted)))
        if ab:
            stem = lambda model, name: file_stem(model, "ab", name)  # noqa: E731
            sections += behaviour_sections([r for r in rows if r["dataset"] in ab], work, everything, n_boot, stem)
        if (path.parent / PANEL_NAME).is_file():
            with ResultStore(path.parent / PANEL_NAME, read_only=True) as panel:
                sections += panel_sections(panel.rows(), work, everything, n_boot, file_stem)
        sections += precheck_sections(rows, fits, settings, work, everything, n_boot, file_stem)
        items = per_item_table(rows, custom)
        if items:
            sections += per_item_sections(items, everything["summary"], work, everything, n_boot, file_stem)
            everything["per_item"] = nan_to_none(everything["per_item"])
            everything["anti_steerable"] = nan_to_none(everything["anti_steerable"])
    for name, table in everything.items():
        write_csv(folder.path(f"{name}.csv"), table)
    write_json(folder.path("report.json"), {"settings": settings, "config": config, **everything})
    atomic_write_text(folder.path("index.html"), html.page("steerscope sweep report", sections))
    return folder.commit()


def _read_json(path: Path) -> dict:
    """A sweep's side file (config.json, fits.json), or {} when the sweep wrote none."""
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise NotAResultStoreError(f"{path} is not the JSON a sweep writes ({exc}); rerun the sweep") from None


def file_stem(model: str, dataset: str, name: str) -> str:
    """The file name stem of one model's and dataset's figure: both as slugs, so it stays inside the report."""
    return f"{slug(model)}_{slug(dataset)}_{name}"


def _group_report(g: _Group, store: ResultStore, out: Path, everything: dict, prefix_files: bool) -> list:
    tag = f"{g.model}, {g.dataset}"
    stem = (lambda s: file_stem(g.model, g.dataset, s)) if prefix_files else (lambda s: s)
    chosen = g.chosen()
    baselines = g.baselines(chosen)
    label = EFFECT_LABELS.get(g.effect, g.effect)
    curves = defaultdict(list)
    for c in chosen:
        if not is_control(c["method"]):
            curves[c["method"]].append(
                {
                    "n_pairs": c["n_pairs"],
                    "effect": c.get(g.effect),
                    "fluency_cost": c.get(FLUENCY),
                    **{k: c[k]["value"] for k in ("cost_total_tokens", "cost_total_flops") if k in c},
                }
            )
    figs = {}
    figs["sample complexity"] = out / f"{stem('sample_complexity')}.png"
    bands = {k: {"effect": v.get(g.effect), "fluency_cost": v.get(FLUENCY)} for k, v in baselines.items()}
    sample_complexity_figure(curves, bands, label, f"{tag}: sample complexity", figs["sample complexity"])
    if any("cost_total_flops" in p for points in curves.values() for p in points):
        figs["amortized cost"] = out / f"{stem('amortized_cost')}.png"
        amortized_cost_figure(
            curves, bands, label, f"{tag}: effect against the total cost of finding it", figs["amortized cost"]
        )
    lines, base = g.tradeoff(chosen)
    figs["effect vs fluency"] = out / f"{stem('tradeoff')}.png"
    tradeoff_figure(
        lines, base, label, f"{tag}: effect vs fluency over the coefficient grid", figs["effect vs fluency"]
    )
    layer_lines = g.layers()
    if any(len(points) > 1 for points in layer_lines.values()):  # one site: nothing to compare across depth
        figs["layer sweep"] = out / f"{stem('layer_sweep')}.png"
        layer_figure(layer_lines, label, f"{tag}: effect by site (test)", figs["layer sweep"])
    grid = g.grid()
    if len({(c["site"], c["coefficient"]) for c in grid}) > 1:
        figs["layer x coefficient"] = out / f"{stem('layer_coefficient')}.png"
        panels = [(g.effect, label), (TOPIC, "topic relevance (similarity to the topic)"), (FLUENCY, "fluency cost")]
        panels = [p for p in panels if any(p[0] in c for c in grid)]
        unsteered = summarize_cells([r for r in g.validation if r["method"] == "unsteered"], g.metrics, g.n_boot)
        title = f"{tag}: layer x coefficient (validation)"
        layer_coefficient_figure(grid, panels, unsteered, title, figs["layer x coefficient"])
        everything["grid"] += [{"model": g.model, "dataset": g.dataset, **_grid_row(c, panels)} for c in grid]
    base_cols = ("model", "dataset")
    summary = [{"model": g.model, "dataset": g.dataset, **_row(c, g)} for c in chosen]
    comparison = [{"model": g.model, "dataset": g.dataset, **_row(c, g)} for c in g.matched()]
    baseline_rows = [
        {"model": g.model, "dataset": g.dataset, "baseline": k, **_metrics(v, g)} for k, v in baselines.items()
    ]
    selection = [
        {
            "model": g.model,
            "dataset": g.dataset,
            "method": k[2],
            "n_pairs": k[3],
            "site": k[4],
            "coefficient": v.coefficient,
            "validation_effect": v.effect,
            "validation_fluency_cost": v.fluency_cost,
            "within_fluency_limit": v.qualified,
        }
        for k, v in sorted(g.choices["per_site"].items())
    ]
    for name, rows in (
        ("summary", summary),
        ("comparison", comparison),
        ("baselines", baseline_rows),
        ("selection", selection),
    ):
        everything[name] += rows
    show = lambda rows: html.table([{k: v for k, v in r.items() if k not in base_cols} for r in rows])  # noqa: E731
    sections = [
        (f"{tag}: what was measured", _protocol_text(g)),
        (f"{tag}: each method at its chosen coefficient (test)", show(summary)),
        (f"{tag}: baselines (test)", show(baseline_rows)),
        (f"{tag}: methods at matched norm (the {g.reference} coefficient for the same n)", show(comparison)),
    ]
    sections += [(f"{tag}: {name}", html.image(p, name)) for name, p in figs.items()]
    sections.append((f"{tag}: example completions (test)", _examples(g, chosen, store)))
    sections.append((f"{tag}: selection (validation)", show(selection)))
    return sections


def _fit_rows(fits: dict, model: str, dataset: str) -> list[dict]:
    """One row per fitted intervention of this model and dataset: its norm, and an SAE method's latent."""
    rows = []
    for key, f in fits.items():
        if not key.startswith(f"{model} / {dataset} / "):
            continue
        norms = f.get("norms") or {}
        ranked = f.get("ranking_top") or {}
        rows.append(
            {
                "method": f["method"],
                "n_pairs": f["n_pairs"],
                "seed": f["seed"],
                "norm": ", ".join(f"{s} {v:.3g}" for s, v in norms.items()) or None,
                "latent": f.get("latent"),
                "latent_auroc": ranked.get("auroc"),
                "clamp_value_per_unit": f.get("scale"),
                "pair_tokens": f["cost"].get("cost_pair_tokens"),
            }
        )
    return sorted(rows, key=lambda r: (r["method"], r["n_pairs"], r["seed"]))


def _metrics(summary: dict, g: _Group) -> dict:
    out = {}
    for m in g.metrics:
        out.update(_flat(m, summary.get(m)))
    return out


def _row(c: dict, g: _Group) -> dict:
    keep = (
        "method",
        "n_pairs",
        "site",
        "coefficient",
        "validation_effect",
        "validation_fluency_cost",
        "within_fluency_limit",
    )
    first = next((c[m] for m in g.metrics if m in c), {})
    delta = f"{g.effect}_minus_{g.reference}"
    extra = _flat(delta, c.get(delta)) if delta in c else {}
    costs = {k.removeprefix("cost_"): c[k]["value"] for k in SHOWN_COSTS if k in c}
    return {
        **{k: c[k] for k in keep if k in c},
        **_metrics(c, g),
        **extra,
        **costs,
        "n_seeds": first.get("n_seeds"),
        "n_prompts": first.get("n_items"),
    }


def _protocol_text(g: _Group) -> html.Html:
    return html.paragraph(
        "Effect: ",
        html.code(g.effect),
        f" ({g.task.scorer} scorer), mean over seeds (pair subsets) and test "
        "prompts, with 95% bootstrap intervals resampling both. Coefficient and site chosen on validation prompts: "
        "the largest validation effect among settings whose fluency cost (cross-entropy of the completions under the "
        "unsteered model, minus that of the unsteered completions, nats/token) is within the limit. Side effects: "
        "delta CE and KL(clean || steered) on natural text with the vector applied. "
        "Prompting baseline instruction: ",
        html.code(g.task.instruction.strip()),
        ".",
    )


def _examples(g: _Group, chosen: list[dict], store: ResultStore) -> html.Html:
    from ..evaluate.store import cell_of

    prompts = g.task.split_prompts()["test"][:EXAMPLES]
    columns: dict[str, list[str]] = {}
    for r in g.test:
        if r["method"] in BASELINE_METHODS and r["metric"] == g.effect:
            columns[r["method"]] = (store.texts(cell_of(r)) or [])[:EXAMPLES]
    for method in sorted({c["method"] for c in chosen}):
        c = max((c for c in chosen if c["method"] == method), key=lambda c: c["n_pairs"])
        rows = [
            r
            for r in g.test
            if (r["method"], r["n_pairs"], r["site"], r["metric"]) == (method, c["n_pairs"], c["site"], g.effect)
            and abs(r["coefficient"] - c["coefficient"]) < 1e-9
        ]
        if rows:
            columns[f"{method} n={c['n_pairs']} x{c['coefficient']:g} (seed {rows[0]['seed']})"] = (
                store.texts(cell_of(rows[0])) or []
            )[:EXAMPLES]
    table = [
        {"prompt": p, **{k: v[i] if i < len(v) else "" for k, v in columns.items()}} for i, p in enumerate(prompts)
    ]
    return html.table(table)  # text cells (class "t") are left-aligned by the page's style

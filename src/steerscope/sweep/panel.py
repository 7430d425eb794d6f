"""The side-effect panel of an A/B sweep: what else a behaviour's vector changes (SteeringControl's question).

Every fitted vector of behaviour X, at the site the layer sweep chose for it, is measured on the test items of
every behaviour Y of the sweep (X itself included: the diagonal, which must equal X's main effect) and of the A/B
files the config names ([panel] ab_files, e.g. MMLU or TruthfulQA in CAA's layout), at multipliers -1 and +1:
the entry (X, Y) is P_Y(+1) - P_Y(-1), paired by item, with a two-level bootstrap interval (the entanglement
matrix). Delta CE and KL on natural text are the sweep's own test-cell side effects. Cells go to `panel.sqlite` in
the run folder (a results store of its own, dataset "X -> Y"), so an interrupted panel resumes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..evaluate.behaviour import ABItem, behaviour_probability, read_ab_items
from ..evaluate.store import Cell, ResultStore
from ..render import html
from ..steering.tasks import AB_METRIC, ABTask
from .config import PanelSpec
from .protocol import SELECT_MULTIPLIERS, paired_difference

PANEL_NAME = "panel.sqlite"
ARROW = " -> "


@dataclass(frozen=True)
class Target:
    """What a vector is measured on: a behaviour's test items, or a user's A/B file."""

    name: str
    items: list[ABItem]
    template: str = "auto"


def panel_targets(tasks: list[ABTask], spec: PanelSpec) -> list[Target]:
    """The sweep's behaviours (their test items) and the panel's A/B files (their first `n_items` items)."""
    out = [Target(t.name, t.split_items()["test"], t.template) for t in tasks] if spec.entanglement else []
    for path in spec.ab_files:
        out.append(Target(f"file:{Path(path).name}", read_ab_items(path)[: spec.n_items]))
    return out


def open_panel(out: Path, settings: dict, spec: PanelSpec, n_boot: int) -> ResultStore:
    store = ResultStore(out / PANEL_NAME, n_boot=n_boot)
    store.check_settings({**settings, "panel": asdict(spec)})
    return store


def measure_panel(store: ResultStore, done: set[str], lm, model: str, source: str, method: str, n: int, seed: int,
                  site: str, vector: Callable[[], object], targets: list[Target], batch_size: int) -> None:  # fmt: skip
    """Cells of one vector (fitted on `source`, at `site`; `vector()` gives it, called only when a cell is missing)
    on every target at multipliers -1 and +1."""
    steer = None
    for target in targets:
        for m in SELECT_MULTIPLIERS:
            cell = Cell(model, method, site, m, n, seed, f"{source}{ARROW}{target.name}", "test")
            if cell.key in done:
                continue
            steer = steer or vector()
            p = behaviour_probability(lm, target.items, batch_size, target.template, steer, m)
            store.write(cell, {AB_METRIC: p})
            done.add(cell.key)


def entanglement(rows: list[dict], n_boot: int = 1000) -> list[dict]:
    """One row per (model, method, n_pairs, steered X, measured Y): P_Y(+1) - P_Y(-1), paired by item, with its
    interval."""
    grouped: dict[tuple, dict[float, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r["metric"] == AB_METRIC and ARROW in r["dataset"]:
            source, target = r["dataset"].split(ARROW, 1)
            grouped[(r["model"], r["method"], r["n_pairs"], r["site"], source, target)][r["coefficient"]].append(r)
    out = []
    for (model, method, n, site, source, target), by_m in sorted(grouped.items()):
        lo, hi = (by_m.get(m, []) for m in SELECT_MULTIPLIERS)
        diff = paired_difference(hi, lo, n_boot) if lo and hi else None
        if diff:
            out.append({"model": model, "method": method, "n_pairs": n, "site": site, "steered": source,
                        "measured": target, "effect": diff["value"], "effect_lo": diff["ci"][0],
                        "effect_hi": diff["ci"][1], "n_items": diff["n_items"]})  # fmt: skip
    return out


def panel_sections(rows: list[dict], out: Path, everything: dict, n_boot: int, stem) -> list:
    """Report sections (title, html): the entanglement matrix (figure and table) per model, method and n_pairs."""
    from .figures import entanglement_figure

    table = entanglement(rows, n_boot)
    everything["entanglement"] = table
    sections = []
    for model, method, n in sorted({(r["model"], r["method"], r["n_pairs"]) for r in table}):
        mine = [r for r in table if (r["model"], r["method"], r["n_pairs"]) == (model, method, n)]
        path = out / f"{stem(model, 'panel', f'entanglement_{method}_n{n}')}.png"
        entanglement_figure(mine, f"{model}: {method} (n={n}), steer X (row), measure Y (column): P(+1) - P(-1)", path)
        shown = [{k: v for k, v in r.items() if k not in ("model", "method", "n_pairs")} for r in mine]
        diag = [r for r in mine if r["steered"] == r["measured"]]
        off = [abs(r["effect"]) for r in mine if r["steered"] != r["measured"]]
        text = html.paragraph(
            "Side-effect panel: each behaviour's vector at its chosen site, measured on every behaviour's test items "
            "and on the A/B files named in [panel] (P(+1) - P(-1), paired by item, 95% bootstrap intervals). The "
            f"diagonal is the main effect (mean {np.mean([r['effect'] for r in diag]):+.3f} over {len(diag)} "
            f"behaviours); off the diagonal, mean |effect| {np.mean(off) if off else float('nan'):.3f}."
        )
        sections.append((f"{model}, A/B: side-effect panel, {method} n={n}", html.join(
            text, html.image(path, "entanglement"), html.table(shown))))  # fmt: skip
    return sections

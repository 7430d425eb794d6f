"""The report's per-item sections: for each model and dataset, the anti-steerable fraction of every steered test
setting (with its interval), a histogram per setting and the items that went the wrong way (sweep/per_item.py
computes them from the store's rows).

A/B datasets show every steered test setting (one site per method and n_pairs: the one chosen on validation);
generation datasets show each method's chosen setting (site and coefficient) per n_pairs, the summary's rows.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..render import html
from .figures import per_item_figure
from .per_item import SETTING, anti_steerable_table, effects_by_setting, setting_key, worst_items

#: at most this many items of a setting are listed in the page (all are in per_item.csv)
LISTED = 8
MAX_PANELS = 12


def _shown(item_rows: list[dict], summary: list[dict]) -> list[dict]:
    """A/B rows, and generation rows at a setting the summary holds (each method's choice per n_pairs)."""
    chosen = {(s["model"], s["dataset"], s["method"], s["n_pairs"], s["site"], float(s["coefficient"]))
              for s in summary}  # fmt: skip
    return [
        r for r in item_rows
        if r["kind"] == "ab"
        or (r["model"], r["dataset"], r["method"], r["n_pairs"], r["site"], float(r["coefficient"])) in chosen
    ]  # fmt: skip


def _label(key: tuple) -> str:
    s = dict(zip(SETTING, key, strict=True))
    at = f" x{s['coefficient']:g}" if s["coefficient"] is not None else ""
    return f"{s['method']} n={s['n_pairs']} {s['site']}{at}"


def per_item_sections(
    item_rows: list[dict], summary: list[dict], out: Path, everything: dict, n_boot: int,
    stem: Callable[[str, str, str], str],
) -> list:  # fmt: skip
    """Report sections (title, html) of per-item effects; adds `anti_steerable` and `per_item` to `everything`."""
    shown = _shown(item_rows, summary)
    table = anti_steerable_table(shown, n_boot)
    everything["anti_steerable"] = table
    everything["per_item"] = item_rows
    by_setting = effects_by_setting(shown)
    sections = []
    for model, dataset in sorted({(r["model"], r["dataset"]) for r in table}):
        rows = [r for r in table if (r["model"], r["dataset"]) == (model, dataset)]
        kind = rows[0]["kind"]
        what = (
            "slope of logit(matching) - logit(other) against the multiplier"
            if kind == "ab"
            else "score steered minus unsteered"
        )
        panels = []
        listed = []
        for r in rows[:MAX_PANELS]:
            key = setting_key(r)
            panels.append({"label": _label(key), "effects": by_setting[key].ravel(), "anti": r["anti_steerable"],
                           "lo": r["anti_steerable_lo"], "hi": r["anti_steerable_hi"]})  # fmt: skip
            for item in worst_items(shown, key, LISTED):
                if item["mean_effect"] < 0:
                    listed.append({"setting": _label(key), **item})
        path = out / f"{stem(model, dataset, 'per_item')}.png"
        per_item_figure(panels, what, f"{model}, {dataset}: per-item effects (test)", path)
        shown_cols = [{k: v for k, v in r.items() if k not in ("kind", "model", "dataset")} for r in rows]
        tag = f"{model}, {dataset}"
        sections.append((f"{tag}: who the vector fails (per-item effects, test)", html.join(
            _text(kind), html.table(shown_cols), html.image(path, "per-item effects"))))  # fmt: skip
        if listed:
            sections.append((f"{tag}: items pushed the wrong way (lowest mean effect first)", html.table(listed)))
        else:
            none = html.paragraph("none: every item moved the right way or not at all")
            sections.append((f"{tag}: items pushed the wrong way", none))
    return sections


def _text(kind: str) -> html.Html:
    if kind == "ab":
        effect = ("each test item's least-squares slope of logit(matching) - logit(other) against the multipliers "
                  "measured (multiplier 0: unsteered), per seed (Tan et al.'s per-item steerability)")  # fmt: skip
    else:
        effect = "each test prompt's score steered minus unsteered, at the setting chosen on validation, per seed"
    return html.paragraph(
        f"Per-item effect: {effect}. Anti-steerable: effect below zero (the vector pushes that item the wrong "
        "way); fraction over seeds and items with a 95% bootstrap interval resampling both; 'tied': effect exactly "
        "zero. Every item of every setting is in per_item.csv (here and in the sweep's folder)."
    )


def nan_to_none(rows: list[dict]) -> list[dict]:
    """Rows with NaN floats as None (for JSON)."""
    return [{k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in r.items()} for r in rows]

"""The summary of a norms or horizon run: its rows as summary.json / summary.csv, the k* by variant table, the
cross-model figures and sentence, the index.html page, and the same table printed in the terminal."""

from __future__ import annotations

import csv
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .._version import __version__
from ..core.io import write_csv, write_json
from ..core.runs import RunFolder, package_versions, slug
from ..render import html
from . import figures
from .records import DepthRun

__all__ = ["print_summary", "scaling_sentence", "variant_rows", "write_summary"]


def variant_rows(result: dict) -> list[dict]:
    """One row per variant of one model's horizon result: k* by each threshold and capability, and k*/L."""
    L = result["n_layers"]
    rows = []
    for name, summary in result["variants"].items():
        row: dict = {"model": result["model"], "variant": name, "L": L}
        for metric in ("delta_ce", "kl"):
            star = summary["k_star"].get(metric, {}).get("k")
            row[f"k* {metric}"] = star
            row[f"k*/L {metric}"] = None if star is None else round(star / L, 3)
        for task, by_variant in result.get("capabilities", {}).items():
            cap = by_variant[name]
            row[f"clean {task}"] = round(cap["clean"], 3)
            row[f"k* {task}"] = cap["k_star"]
            row[f"k*/L {task}"] = None if cap["k_star"] is None else round(cap["k_star"] / L, 3)
        rows.append(row)
    return rows


def scaling_sentence(rows: list[dict]) -> str:
    """What the models of a run can and cannot support about how k* scales."""
    n = len(rows)
    depths = sorted({r["layers"] for r in rows})
    if n < 2:
        return "One model: a horizon, not a scaling law; run several models for a cross-model table."
    text = (
        f"{n} models with {len(depths)} distinct depths ({', '.join(map(str, depths))}). "
        "They differ in more than depth (width, training data and length, architecture family), so any trend "
        "below mixes these factors. "
    )
    if n < 5:
        return text + (
            f"With {n} points no trend of k*/L against depth or norm growth can be told apart from chance "
            "(a rank correlation needs at least 5 models to reach p < 0.05 even when perfect); read the figures as "
            "the models' positions, not as a scaling law."
        )
    return text + (
        f"With {n} points a rank correlation is meaningful only if strong; a scaling law needs models that differ "
        "in depth alone."
    )


def write_summary(folder: RunFolder, rows: list[dict], kind: str, run: DepthRun, plan=None, results=()) -> None:
    versions = package_versions()
    write_json(
        folder.path("summary.json"), {"kind": kind, "steerscope": __version__, "versions": versions, "rows": rows}
    )
    write_csv(folder.path("summary.csv"), rows)
    sections = [("Summary", html.table(rows))]
    text = run.text
    sections.append(
        (
            "Text",
            html.paragraph(
                f"{text.n} sequences of {text.seq_len} tokens from ",
                html.code(text.source),
                f" (selection seed {text.seed}); norms exclude position 0.",
            ),
        )
    )
    if kind == "horizon":
        listed = html.join(*(html.paragraph(html.bold(name), ": ", v.describe()) for name, v in plan.variants.items()))
        sections.append(("Variants", listed))
        table = [r for result in results for r in variant_rows(result)]
        write_csv(folder.path("variants.csv"), table)
        sections.append(("k* by variant", html.table(table)))
        sections.append(("What these models can support", html.paragraph(scaling_sentence(rows))))
        if len(rows) > 1:
            for name, key, label in (
                ("kstar_vs_depth.png", "layers", "layers"),
                ("kstar_vs_growth.png", "growth_raw", "norm growth per layer (raw)"),
            ):
                figures.scaling_figure(rows, key, label, folder.path(name))
                sections.append((f"k*/L against {label}", html.image(folder.path(name), name)))
    for row in rows:
        base = folder.path(slug(row["model"]))
        images = html.join(*(html.image(p, p.name) for p in sorted(base.glob("*.png"))))
        sections.append((row["model"], images))
    folder.path("index.html").write_text(html.page(f"steerscope {kind}", sections), encoding="utf-8")


_SHORT = {
    "model": "model",
    "family": "family",
    "layers": "L",
    "d_model": "d",
    "growth_raw": "growth raw",
    "growth_centred": "growth centred",
    "k_star_delta_ce": "k* dCE",
    "k_star_delta_ce_over_layers": "k*/L dCE",
    "k_star_kl": "k* KL",
    "k_star_kl_over_layers": "k*/L KL",
    "clean_ce": "clean CE",
}


def print_summary(rows: list[dict], console: Console, title: str, folder: Path | None = None) -> None:
    """One-screen table of the summary rows (and, for a horizon run in `folder`, k* by variant)."""
    if not rows:
        return
    keys = [k for k in _SHORT if k in rows[0]]
    _print_table(console, title, [{_SHORT[k]: row.get(k) for k in keys} for row in rows])
    by_variant = folder / "variants.csv" if folder is not None else None
    if by_variant is not None and by_variant.is_file():
        with by_variant.open(newline="", encoding="utf-8") as f:
            _print_table(console, "k* by variant", list(csv.DictReader(f)))
        console.print(scaling_sentence(rows))


def _print_table(console: Console, title: str, rows: list[dict]) -> None:
    table = Table(title=title)
    for key in rows[0]:
        table.add_column(str(key))
    for row in rows:
        table.add_row(*(html.fmt(v) if not isinstance(v, str) else v for v in row.values()))
    console.print(table)

"""Runner of `steerscope lens` and `steerscope depth`: depth read with every instrument, one page per run.

For each model, on the same natural text (depth.run.TextSpec): the logit lens, the tuned lens (trained on
other documents of the same source, or loaded), sublayer contributions, layer skipping / swapping with the
skip matrix, and optionally norm growth and the clean-sourced horizon; then Hu et al.'s three effective
depths. Each model gets a subfolder (JSON, CSV, PNG); the run gets a cross-model summary (effective depth / L
next to k* / L and the growth rate) and one index.html. Every instrument's result is saved when done, so an
interrupted run resumes instrument by instrument (the horizon sweep batch by batch, the tuned lens step by
step); other settings are refused naming the difference (core.runs.RunFolder).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from rich.console import Console

from .._version import __version__
from ..core.cluster import RaySpec
from ..core.corpus import token_sequences
from ..core.io import write_csv, write_json
from ..core.models import LoadedModel
from ..core.runs import RunFolder, check_settings, model_info, progress_bar, slug
from ..core.validate import BadNumberError, finite, whole
from ..render import html
from . import lens_figures
from .contributions import contributions
from .effective import PAPER, RULES, effective_depths
from .horizon import check_ks, summarize_horizon
from .lens import lens
from .on_ray import rows_on_ray
from .records import DepthRun
from .run import _batches, _each_model, _norms_for, _sweep
from .skipping import join_batches, skipping_batch, summarize_skipping
from .summary import _print_table, scaling_sentence
from .tuned_lens import TunedLens, train_tuned_lens

INSTRUMENTS = ("lens", "tuned", "contributions", "skipping", "norms", "horizon")
DEPTH_DEFAULT = ("lens", "contributions", "skipping", "norms", "horizon")


def parse_instruments(text: str) -> tuple[str, ...]:
    """'all' or comma-separated instrument names, each once, in the canonical order."""
    names = list(INSTRUMENTS) if text.strip() == "all" else [v.strip() for v in text.split(",") if v.strip()]
    unknown = [n for n in names if n not in INSTRUMENTS]
    if unknown or not names:
        raise BadNumberError(
            f"unknown depth instrument {unknown[0] if unknown else text!r}; choose from {', '.join(INSTRUMENTS)} or all"
        )
    return tuple(n for n in INSTRUMENTS if n in names)


@dataclass(frozen=True)
class InstrumentPlan:
    """What `steerscope lens` / `steerscope depth` measure on each model.

    tuned_lens: a saved tuned lens to evaluate instead of training one (one-model runs);
    tuned_steps / tuned_n / tuned_lr: training of the tuned lens on `tuned_n` sequences of other documents;
    swaps: also swap every adjacent pair; horizon_ks / max_delta_ce / max_kl: the clean-sourced horizon.
    """

    instruments: tuple[str, ...] = ("lens",)
    tuned_lens: str = ""
    tuned_steps: int = 100
    tuned_n: int = 32
    tuned_lr: float = 1e-3
    swaps: bool = True
    horizon_ks: list[int] | None = None
    thresholds: dict[str, float] = field(default_factory=lambda: {"delta_ce": 0.1, "kl": 0.1})

    def __post_init__(self) -> None:
        parse_instruments(",".join(self.instruments))
        whole(self.tuned_steps, "tuned-lens training steps (--tuned-steps)", 1)
        whole(self.tuned_n, "tuned-lens training sequences (--tuned-n)", 1)
        finite(self.tuned_lr, "the tuned-lens learning rate (--tuned-lr)", 1e-8, 10.0)
        if self.tuned_lens and "tuned" not in self.instruments:
            raise BadNumberError("a saved tuned lens (--tuned-lens FILE) is evaluated by the 'tuned' instrument")

    def settings(self) -> dict:
        return {
            "instruments": list(self.instruments),
            "tuned_lens": self.tuned_lens,
            "tuned": [self.tuned_steps, self.tuned_n, self.tuned_lr],
            "swaps": self.swaps,
            "horizon_ks": self.horizon_ks,
            "thresholds": self.thresholds,
        }


def run_instruments(
    run: DepthRun,
    plan: InstrumentPlan,
    console: Console | None = None,
    lm: LoadedModel | None = None,
    cluster: RaySpec | None = None,
) -> tuple[Path, list[dict]]:
    """Every asked instrument on each model; returns the result folder and one summary row per model."""
    console = console or Console()
    if plan.tuned_lens and len(run.models) != 1:
        raise BadNumberError("a saved tuned lens belongs to one model; run it with one model")
    if plan.tuned_lens:
        TunedLens.load(plan.tuned_lens)  # an unreadable file is refused before any work
    folder = RunFolder(run.out, run.settings("instruments", **plan.settings()), run.overwrite, run.restart)
    if cluster is not None:
        rows = rows_on_ray(cluster, run, folder, lambda one, c: run_instruments(one, plan, c), console)
        results = [json.loads(folder.path(slug(m), "depth.json").read_text()) for m in run.models]
        _write_page(folder, rows, results, run, plan)
        return folder.commit(), rows
    rows, results, lent = [], [], lm
    with progress_bar(console) as progress:
        for spec, lm in _each_model(run, console, lent):
            result = _one_model(lm, spec, run, plan, folder, progress, console)
            rows.append(summary_row(result))
            results.append(result)
    _write_page(folder, rows, results, run, plan)
    return folder.commit(), rows


def _cached(folder: RunFolder, spec: str, name: str, config: dict, compute: Callable[[], dict]) -> dict:
    """An instrument's result, computed once and saved (a resumed run reads it back)."""
    done = folder.path(slug(spec), f"{name}.json")
    if done.is_file():
        saved = json.loads(done.read_text())
        check_settings(saved.get("config"), config, done, "pass --restart to start over")
        return saved["result"]
    result = compute()
    write_json(done, {"config": config, "result": result})
    return result


def _one_model(lm: LoadedModel, spec: str, run: DepthRun, plan: InstrumentPlan, folder, progress, console) -> dict:
    L = lm.n_layers
    ks = check_ks(plan.horizon_ks, L) if "horizon" in plan.instruments else []
    batches = _batches(lm, run.text)
    config = {"text": asdict(run.text), "n_boot": run.n_boot, "version": __version__}
    base = folder.path(slug(spec))
    result: dict = {**model_info(lm, spec), "text": asdict(run.text), "instruments": list(plan.instruments)}
    result["scored_positions"] = (
        "lens: positions 1..T-1 (CE 1..T-2); contributions and skip matrix: positions 1..T-1; "
        "skipping and horizon outputs: predictions from positions 1..T-2; position 0 is never scored"
    )

    def bar(name: str, total: int) -> Callable[[], None]:
        task = progress.add_task(f"{name} {slug(spec)}", total=total)
        return lambda: progress.advance(task)

    if "norms" in plan.instruments:
        norms = _norms_for(lm, spec, run, batches, folder, progress)
        result["norms"] = {"fit": norms["fit"], "stream": norms["stream"]}
    if "lens" in plan.instruments or "tuned" in plan.instruments:
        result["lens"] = _cached(
            folder, spec, "lens", config, lambda: lens(lm, batches, None, run.n_boot, bar("logit lens", len(batches)))
        )
    if "tuned" in plan.instruments:
        result["tuned_lens"] = _tuned(lm, spec, run, plan, batches, folder, config, bar, console)
    if "contributions" in plan.instruments:
        result["contributions"] = _cached(
            folder,
            spec,
            "contributions",
            config,
            lambda: {"per_layer": contributions(lm, batches, run.n_boot, bar("contributions", len(batches)))},
        )["per_layer"]
    if "skipping" in plan.instruments:

        def skip() -> dict:
            tick = bar("skip/swap", len(batches) * (2 * L - 1 if plan.swaps else L))
            parts = [skipping_batch(lm, ids, plan.swaps, tick) for ids in batches]
            return summarize_skipping(join_batches(parts), run.n_boot)

        result["skipping"] = _cached(folder, spec, "skipping", {**config, "swaps": plan.swaps}, skip)
    if "horizon" in plan.instruments:
        from .horizon import HorizonVariant

        per_seq = _sweep(lm, spec, run, batches, ks, "clean", HorizonVariant(), None, folder, progress)
        result["horizon"] = summarize_horizon(ks, per_seq, plan.thresholds, run.n_boot)
    result["effective_depth"] = effective_depths(
        result.get("contributions"), result.get("lens", {}).get("per_layer"), L
    )
    _write_model(lm, base, result)
    return result


def _tuned(lm, spec, run: DepthRun, plan: InstrumentPlan, batches, folder: RunFolder, config, bar, console) -> dict:
    """Train (on other documents of the same source) or load the tuned lens; evaluate it on the run's text."""
    path = folder.path(slug(spec), "tuned-lens.safetensors")
    if plan.tuned_lens:
        translator = TunedLens.load(plan.tuned_lens, lm)
        origin = {"loaded_from": plan.tuned_lens}
    elif path.is_file():
        translator = TunedLens.load(path, lm)
        origin = {"trained_here": str(path.name)}
    else:
        text = run.text
        # the first n rows are the evaluation text (the same selection); training takes the next tuned_n documents
        ids = token_sequences(lm.tokenizer, text.source, text.n + plan.tuned_n, text.seq_len, text.seed)[text.n :]
        train = list(ids.to(lm.device).split(text.batch_size))
        console.print(
            f"tuned lens for {slug(spec)}: {plan.tuned_steps} Adam steps (lr {plan.tuned_lr:g}) over {plan.tuned_n} "
            f"sequences of {text.seq_len} tokens not in the evaluation text"
        )
        meta = {"model": spec, "text": asdict(text), "tuned_n": plan.tuned_n, "evaluation_rows_skipped": text.n}
        translator = train_tuned_lens(
            lm, train, plan.tuned_steps, folder.path(slug(spec), "tuned-lens-state.safetensors"), plan.tuned_lr, meta
        )
        translator.save(path)
        origin = {"trained_here": str(path.name)}
    meta = {k: v for k, v in translator.meta.items() if k != "losses"}
    cost = {k: meta.get(k) for k in ("steps", "tokens", "seconds", "lr")}

    def evaluate() -> dict:
        with torch.no_grad():
            return lens(lm, batches, translator, run.n_boot, bar("tuned lens", len(batches)))

    summary = _cached(folder, spec, "tuned-lens-eval", {**config, **origin}, evaluate)
    return {**summary, **origin, "cost": cost, "provenance": meta, "losses": translator.meta.get("losses", [])}


def _write_model(lm: LoadedModel, base: Path, result: dict) -> None:
    write_json(base / "depth.json", result)
    name = lm.name
    if "lens" in result:
        write_csv(base / "lens.csv", result["lens"]["per_layer"])
        curves = {"logit lens": result["lens"]}
        if "tuned_lens" in result:
            write_csv(base / "tuned-lens.csv", result["tuned_lens"]["per_layer"])
            curves["tuned lens"] = result["tuned_lens"]
        depths = result["effective_depth"]["depths"]
        lens_figures.lens_figure(curves, f"{name}: lens against the model", base / "lens.png", depths)
    if "contributions" in result:
        write_csv(base / "contributions.csv", result["contributions"])
        lens_figures.contributions_figure(
            result["contributions"], f"{name}: sublayer contributions", base / "contributions.png"
        )
    if "skipping" in result:
        write_csv(base / "skip.csv", result["skipping"]["skip"])
        write_csv(base / "swap.csv", result["skipping"]["swap"])
        lens_figures.skipping_figure(result["skipping"], f"{name}: layer skipping and swapping", base / "skipping.png")


def summary_row(result: dict) -> dict:
    """One cross-model row: effective depths and / L, k* / L, growth rate, skip finding, lens at the middle."""
    L = result["n_layers"]
    row: dict = {"model": result["model"], "family": result["family"], "layers": L, "d_model": result["d_model"]}
    eff = result["effective_depth"]
    for rule in RULES:
        row[f"effective_depth_{rule}"] = eff["depths"][rule]
        row[f"effective_depth_{rule}_over_layers"] = eff["over_layers"][rule]
    if "horizon" in result:
        for metric in ("delta_ce", "kl"):
            star = result["horizon"]["k_star"][metric]["k"]
            row[f"k_star_{metric}"] = star
            row[f"k_star_{metric}_over_layers"] = None if star is None else star / L
    if "norms" in result:
        row["growth_raw"] = result["norms"]["fit"]["raw"]["rate"]
        row["growth_raw_ci"] = result["norms"]["fit"]["raw"]["ci"]
    if "skipping" in result:
        found = result["skipping"]["finding"]
        row["skip_later_change_first_half"] = found["first_half"]
        row["skip_later_change_second_half"] = found["second_half"]
    if "lens" in result:
        row["lens_kl_mid"] = result["lens"]["per_layer"][L // 2]["kl"]
    if "tuned_lens" in result:
        row["tuned_kl_mid"] = result["tuned_lens"]["per_layer"][L // 2]["kl"]
    return row


def effective_depth_rows(results: list[dict]) -> list[dict]:
    """One row per model and the paper's: the three effective depths, each with / L."""
    rows = []
    for r in results:
        eff = r["effective_depth"]
        row: dict = {"model": r["model"], "L": r["n_layers"]}
        for rule in RULES:
            d = eff["depths"][rule]
            row[rule] = d
            row[f"{rule} / L"] = None if d is None else round(d / r["n_layers"], 3)
        by_sublayer = eff.get("cosine_by_sublayer") or {}
        row["cosine: attn, mlp"] = ", ".join(str(by_sublayer.get(p)) for p in ("attn", "mlp")) if by_sublayer else None
        if "horizon" in r:
            star = r["horizon"]["k_star"]["delta_ce"]["k"]
            row["k* (dCE)"] = star
            row["k* / L"] = None if star is None else round(star / r["n_layers"], 3)
        rows.append(row)
    paper: dict = {"model": PAPER["model"], "L": PAPER["layers"]}
    for rule, d in zip(RULES, PAPER["depths"], strict=True):
        paper[rule] = d
        paper[f"{rule} / L"] = round(d / PAPER["layers"], 3)
    rows.append(paper)
    return rows


DEFINITIONS = (
    "Effective depth, each rule a layer index l reported as l + 1 layers: cosine = the last layer whose attention or "
    "MLP output's cosine with the residual it reads has another sign than the layer before; kl = the first layer "
    "after the maximum of the logit lens's KL(final || lens) whose KL is below half that maximum; top5 = the first "
    "layer whose logit-lens top-5 overlap with the model exceeds 0.3. The paper's row: Hu et al. 2512.14064, "
    "Qwen2.5-1.5B-Instruct, by its three definitions (the order of its numbers is the paper's, not matched rule by "
    "rule)."
)


def _write_page(folder: RunFolder, rows: list[dict], results: list[dict], run: DepthRun, plan: InstrumentPlan) -> None:
    write_json(folder.path("summary.json"), {"kind": "depth instruments", "steerscope": __version__, "rows": rows})
    write_csv(folder.path("summary.csv"), rows)
    eff_rows = effective_depth_rows(results)
    write_csv(folder.path("effective-depth.csv"), eff_rows)
    text = run.text
    sections: list[tuple[str, str]] = [
        ("Summary", html.table(rows)),
        ("Effective depth", html.join(html.table(eff_rows), html.paragraph(DEFINITIONS))),
        (
            "Text",
            html.paragraph(
                f"{text.n} sequences of {text.seq_len} tokens from ",
                html.code(text.source),
                f" (selection seed {text.seed}); position 0 is never scored. "
                f"Instruments: {', '.join(plan.instruments)}.",
            ),
        ),
        ("What these models can support", html.paragraph(scaling_sentence(rows))),
    ]
    for result in results:
        base = folder.path(slug(result["model"]))
        parts = []
        if "tuned_lens" in result:
            cost = result["tuned_lens"]["cost"]
            parts.append(
                html.paragraph(
                    f"Tuned lens: {cost['steps']} steps, {cost['tokens']} tokens, {cost['seconds']:.0f} s of training."
                )
            )
        if "skipping" in result:
            found = result["skipping"]["finding"]
            parts.append(
                html.paragraph(
                    "Skip matrix: skipping a layer of the first half changes what each later layer writes by "
                    f"{html.fmt(found['first_half'])} (mean relative change), of the second half by "
                    f"{html.fmt(found['second_half'])}."
                )
            )
        parts += [html.image(p, p.name) for p in sorted(base.glob("*.png"))]
        sections.append((result["model"], html.join(*parts)))
    folder.path("index.html").write_text(html.page("steerscope depth", sections), encoding="utf-8")


_SHORT = {
    "model": "model",
    "layers": "L",
    "effective_depth_cosine": "eff. depth cosine",
    "effective_depth_kl": "eff. depth KL",
    "effective_depth_top5": "eff. depth top-5",
    "k_star_delta_ce": "k* dCE",
    "growth_raw": "growth raw",
    "skip_later_change_first_half": "skip effect 1st half",
    "skip_later_change_second_half": "skip effect 2nd half",
    "lens_kl_mid": "lens KL mid",
    "tuned_kl_mid": "tuned KL mid",
}


def print_instruments(rows: list[dict], console: Console) -> None:
    """One-screen table of the summary rows: effective depths, k*, growth, skip effect, lens KL at mid-depth."""
    if rows:
        keys = [k for k in _SHORT if k in rows[0]]
        _print_table(console, "depth instruments", [{_SHORT[k]: row.get(k) for k in keys} for row in rows])


__all__ = [
    "INSTRUMENTS",
    "InstrumentPlan",
    "effective_depth_rows",
    "parse_instruments",
    "print_instruments",
    "run_instruments",
    "summary_row",
]

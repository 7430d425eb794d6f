"""Runners for `steerscope norms` and `steerscope horizon`: several models, one result folder.

Each model gets a subfolder with JSON, CSV and PNG; the folder also gets a cross-model summary
(JSON, CSV, figures of k* against depth and growth rate) and an index.html. Work goes into
`<out>.partial/` and is moved into place when complete (core.runs.RunFolder); an interrupted run resumes
(finished models, and the horizon sweep from its last finished batch) when run again with the same
settings, and is refused, naming the settings that differ, otherwise (`restart` starts over).
"""

from __future__ import annotations

import gc
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import Progress

from .._version import __version__
from ..core.cluster import RaySpec
from ..core.corpus import token_sequences
from ..core.io import write_csv, write_json
from ..core.loading import load_model
from ..core.models import LoadedModel
from ..core.runs import RunFolder, check_settings, model_info, progress_bar, slug
from ..core.validate import BadNumberError, finite, whole
from . import figures
from .capability import TASK_NAMES, capability_batch, make_task, summarize_capability
from .horizon import (
    METRICS,
    HorizonVariant,
    check_ks,
    horizon_batch,
    output_means,
    summarize_horizon,
    variant_name,
)
from .norms import measure_norms
from .on_ray import rows_on_ray
from .profile import parse_profile_ks, profile_batch, profile_cost, summarize_profile
from .records import DepthRun, TextSpec
from .summary import print_summary, scaling_sentence, variant_rows, write_summary

# The summary helpers are also reached from here by the CLI and the depth instruments.
__all__ = [
    "DepthRun",
    "HorizonPlan",
    "TextSpec",
    "print_summary",
    "run_horizon",
    "run_norms",
    "scaling_sentence",
    "variant_rows",
]


def _batches(lm: LoadedModel, text: TextSpec) -> list[torch.Tensor]:
    if text.batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {text.batch_size}")
    ids = token_sequences(lm.tokenizer, text.source, text.n, text.seq_len, text.seed).to(lm.device)
    return list(ids.split(text.batch_size))


def _norms_for(lm, spec, run: DepthRun, batches, folder: RunFolder, progress: Progress) -> dict:
    done = folder.path(slug(spec), "norms.json")
    config = {"text": asdict(run.text), "fit_range": list(run.fit_range), "n_boot": run.n_boot}
    if done.is_file():  # finished by an earlier run with the same settings (RunFolder checked them)
        saved = json.loads(done.read_text())
        check_settings(saved.get("config"), config, done, "pass --restart to start over")
        return saved
    task = progress.add_task(f"norms {slug(spec)}", total=2 * len(batches))
    result = measure_norms(lm, batches, run.fit_range, run.n_boot, on_batch=lambda: progress.advance(task))
    result = {**model_info(lm, spec), "config": config, "seq_len": run.text.seq_len, **result}
    base = folder.path(slug(spec))
    write_csv(base / "norms.csv", result["sites"])
    write_csv(base / "sublayers.csv", result["sublayers"])
    figures.norms_figure(result, f"{lm.name}: residual norm growth", base / "norms.png")
    write_json(done, result)
    return result


def _each_model(run: DepthRun, console: Console, lent: LoadedModel | None = None):
    """(spec, model) for each model of the run: `lent` for a one-model run, else each loaded in turn."""
    if lent is not None and len(run.models) != 1:
        raise ValueError(f"a loaded model stands for one model spec, but the run names {len(run.models)}")
    for spec in run.models:
        placement = {"device_map": run.device_map or None, "max_memory": run.max_memory or None}
        lm = lent or load_model(spec, run.dtype, run.device, trust_remote_code=run.trust_remote_code, **placement)
        console.print(f"[bold]{spec}[/bold]: {lm.adapter.describe()}, {lm.n_layers} layers, d_model {lm.d_model}")
        yield spec, lm
        del lm
        gc.collect()


def run_norms(
    run: DepthRun, console: Console | None = None, lm: LoadedModel | None = None, cluster: RaySpec | None = None
) -> tuple[Path, list[dict]]:
    """Norm growth for each model; returns the result folder and one summary row per model.

    `lm`: the already loaded model of a one-model run (loaded from its spec when None). `cluster`: one Ray
    task per model instead (depth/on_ray.py).
    """
    console = console or Console()
    folder = RunFolder(run.out, run.settings("norms"), run.overwrite, run.restart)
    if cluster is not None:
        rows = rows_on_ray(cluster, run, folder, lambda one, c: run_norms(one, c), console)
        write_summary(folder, rows, "norms", run)
        return folder.commit(), rows
    rows, lent = [], lm
    with progress_bar(console) as progress:
        for spec, lm in _each_model(run, console, lent):
            result = _norms_for(lm, spec, run, _batches(lm, run.text), folder, progress)
            rows.append(_summary_row(result))
    write_summary(folder, rows, "norms", run)
    return folder.commit(), rows


def _summary_row(norms: dict, horizon: dict | None = None) -> dict:
    row = {
        "model": norms["model"],
        "family": norms["family"],
        "layers": norms["n_layers"],
        "d_model": norms["d_model"],
        "growth_raw": norms["fit"]["raw"]["rate"],
        "growth_raw_ci": norms["fit"]["raw"]["ci"],
        "growth_centred": norms["fit"]["centred"]["rate"],
        "growth_centred_ci": norms["fit"]["centred"]["ci"],
        "fit_layers": norms["fit"]["layers"],
    }
    if horizon is None:
        return row
    L = norms["n_layers"]
    variants = horizon["variants"]
    several = len(variants) > 1
    for name, summary in variants.items():
        tag = f"_{name}" if several else ""
        for metric in ("delta_ce", "kl"):
            star = summary["k_star"].get(metric, {}).get("k")
            row[f"k_star_{metric}{tag}"] = star
            row[f"k_star_{metric}{tag}_over_layers"] = None if star is None else star / L
    for task, by_variant in horizon.get("capabilities", {}).items():
        row[f"clean_{task}"] = next(iter(by_variant.values()))["clean"]
        for name, summary in by_variant.items():
            tag = f"_{name}" if several else ""
            row[f"k_star_{task}{tag}"] = summary["k_star"]
            row[f"k_star_{task}{tag}_over_layers"] = None if summary["k_star"] is None else summary["k_star"] / L
    if "profile" in horizon:
        row["profile_longest_layers"] = horizon["profile"]["longest"][:3]
    row["clean_ce"] = horizon["clean_ce"]
    return row


@dataclass(frozen=True)
class HorizonPlan:
    """What `steerscope horizon` measures on each model.

    variants: name -> variant, each swept over `ks` on the text (the first one also fills the classic
        horizon.json/png); thresholds: k* thresholds on |delta CE| and KL;
    tasks: capability tasks (induction, cloze) swept for every variant, `task_n` items each, k* within
        `task_tolerance` of the clean accuracy;
    profile_ks: the windows of the per-layer profile ('coarse', 'all' or '1,2,4'), None for no profile.
    """

    ks: list[int] | None = None
    variants: dict[str, HorizonVariant] = field(default_factory=lambda: {"clean": HorizonVariant()})
    thresholds: dict[str, float] = field(default_factory=lambda: {"delta_ce": 0.1, "kl": 0.1})
    tasks: tuple[str, ...] = ()
    task_n: int = 64
    task_tolerance: float = 0.05
    profile_ks: str | None = None

    def __post_init__(self) -> None:
        if not self.variants:
            raise BadNumberError("name at least one horizon variant")
        whole(self.task_n, "capability items per task (--task-n)", 2)
        finite(self.task_tolerance, "the capability tolerance (--task-tolerance)", 0.0, 1.0)
        for name in self.tasks:
            if name not in TASK_NAMES:
                raise BadNumberError(f"unknown capability task {name!r}; choose from {', '.join(TASK_NAMES)}")

    def settings(self) -> dict:
        return {
            "ks": None if self.ks is None else list(self.ks),
            "variants": {name: v.to_dict() for name, v in self.variants.items()},
            "tasks": list(self.tasks),
            "task_n": self.task_n,
            "profile_ks": self.profile_ks,
        }

    def profile_variant(self) -> HorizonVariant:
        """The first variant the per-layer profile can take (it truncates one layer at a time)."""
        usable = [v for v in self.variants.values() if not v.readout_only and v.enforce_from is None]
        return usable[0] if usable else HorizonVariant(position0=next(iter(self.variants.values())).position0)


def run_horizon(
    run: DepthRun,
    ks: list[int] | None = None,
    variant: HorizonVariant | None = None,
    thresholds: dict[str, float] | None = None,
    console: Console | None = None,
    lm: LoadedModel | None = None,
    plan: HorizonPlan | None = None,
    cluster: RaySpec | None = None,
) -> tuple[Path, list[dict]]:
    """The horizon sweep (and norm growth) for each model; returns the folder and summary rows.

    Either `plan` (several variants, capability tasks, the per-layer profile) or the one-variant
    shorthand `ks`, `variant`, `thresholds`. `lm`: the already loaded model of a one-model run (loaded
    from its spec when None). The thresholds only summarize the per-sequence results, so a resumed run
    may change them. `cluster`: one Ray task per model instead (depth/on_ray.py).
    """
    console = console or Console()
    if plan is None:
        plan = HorizonPlan(ks=ks, variants={variant_name(variant or HorizonVariant()): variant or HorizonVariant()})
        if thresholds:
            plan = replace(plan, thresholds=thresholds)
    settings = run.settings("horizon", **plan.settings())
    folder = RunFolder(run.out, settings, run.overwrite, run.restart)
    if cluster is not None:
        rows = rows_on_ray(cluster, run, folder, lambda one, c: run_horizon(one, console=c, plan=plan), console)
        results = [json.loads(folder.path(slug(m), "horizon.json").read_text()) for m in run.models]
        write_summary(folder, rows, "horizon", run, plan, results)
        return folder.commit(), rows
    rows, results, lent = [], [], lm
    with progress_bar(console) as progress:
        for spec, lm in _each_model(run, console, lent):
            sweep_ks = check_ks(plan.ks, lm.n_layers)  # before any work: refuse a k or enforce_from the model lacks
            for v in plan.variants.values():
                v.check(lm.n_layers)
            profile_ks = None if plan.profile_ks is None else parse_profile_ks(plan.profile_ks, lm.n_layers)
            batches = _batches(lm, run.text)  # tokenized once, for the norms and the sweep
            norms = _norms_for(lm, spec, run, batches, folder, progress)
            means = output_means(lm, batches) if _needs_means(plan) else None
            summaries = {}
            for name, v in plan.variants.items():
                per_seq = _sweep(lm, spec, run, batches, sweep_ks, name, v, means, folder, progress)
                summaries[name] = summarize_horizon(sweep_ks, per_seq, plan.thresholds, run.n_boot)
            first = next(iter(summaries.values()))
            first_variant = next(iter(plan.variants.values()))
            result = {
                **model_info(lm, spec),
                "variant": first_variant.to_dict(),
                "variant_text": first_variant.describe(),
                "text": asdict(run.text),
                "scored_positions": "predictions from positions 1..T-2 (position 0 and the last are not scored)",
                **first,
                "variants": summaries,
                "variant_texts": {name: v.describe() for name, v in plan.variants.items()},
            }
            if plan.tasks:
                result["capabilities"] = _capabilities(lm, spec, run, plan, sweep_ks, means, folder, progress)
            if profile_ks is not None:
                result["profile"] = _profile(lm, spec, run, plan, batches, profile_ks, means, folder, progress, console)
            base = folder.path(slug(spec))
            _write_model_results(lm, base, result, plan)
            rows.append(_summary_row(norms, result))
            results.append(result)
    write_summary(folder, rows, "horizon", run, plan, results)
    return folder.commit(), rows


def _needs_means(plan: HorizonPlan) -> bool:
    return any(v.fill == "mean" for v in plan.variants.values()) or (
        plan.profile_ks is not None and plan.profile_variant().fill == "mean"
    )


def _write_model_results(lm: LoadedModel, base: Path, result: dict, plan: HorizonPlan) -> None:
    write_json(base / "horizon.json", result)
    write_csv(
        base / "horizon.csv",
        [{"variant": name, **r} for name, summary in result["variants"].items() for r in summary["per_k"]],
    )
    first = next(iter(plan.variants))
    title = f"{lm.name}: horizon ({result['variant_texts'][first]})"
    figures.horizon_figure(result["variants"][first], title, base / "horizon.png")
    if len(plan.variants) > 1:
        for metric in METRICS:
            path = base / f"variants-{metric}.png"
            figures.variants_figure(result["variants"], metric, f"{lm.name}: every variant", path)
    if "capabilities" in result:
        figures.capability_figure(result["capabilities"], f"{lm.name}: capability horizons", base / "capability.png")
    if "profile" in result:
        write_csv(base / "profile.csv", result["profile"]["layers"])
        figures.profile_figure(result["profile"], f"{lm.name}: per-layer horizon profile", base / "profile.png")


def _sweep(lm, spec, run: DepthRun, batches, ks, name, variant, means, folder: RunFolder, progress: Progress) -> dict:
    """Per-sequence metrics of one variant for every k, checkpointed after every batch."""
    ckpt = folder.path(slug(spec), f"horizon-checkpoint-{name}.json")
    config = {"ks": ks, "variant": variant.to_dict(), "text": asdict(run.text), "version": __version__}
    state = json.loads(ckpt.read_text()) if ckpt.is_file() else {"config": config, "batches": {}}
    check_settings(state.get("config"), config, ckpt, "pass --restart to start over")
    task = progress.add_task(f"horizon {slug(spec)} {name}", total=len(batches) * len(ks))
    progress.advance(task, len(state["batches"]) * len(ks))
    for i, ids in enumerate(batches):
        if str(i) in state["batches"]:
            continue
        state["batches"][str(i)] = horizon_batch(lm, ids, ks, variant, means, on_k=lambda k: progress.advance(task))
        write_json(ckpt, state)
    return _concat([state["batches"][str(i)] for i in range(len(batches))])


def _concat(ordered: list[dict]) -> dict:
    """Join per-batch results {metric: [rows][B]} along the sequences."""
    return {m: [sum((b[m][j] for b in ordered), []) for j in range(len(ordered[0][m]))] for m in ordered[0]}


def _capabilities(lm, spec, run: DepthRun, plan: HorizonPlan, ks, means, folder: RunFolder, progress) -> dict:
    """Capability score against k for every task and variant (each task saved once complete)."""
    out = {}
    for task_name in plan.tasks:
        done = folder.path(slug(spec), f"capability-{task_name}.json")
        if done.is_file():
            out[task_name] = json.loads(done.read_text())["summaries"]
            continue
        task = make_task(task_name, lm, plan.task_n, run.text.seed)
        parts = task.batches(run.text.batch_size)
        bar = progress.add_task(f"{task_name} {slug(spec)}", total=len(parts) * len(ks) * len(plan.variants))
        summaries = {}

        def tick(k: int, bar=bar) -> None:
            progress.advance(bar)

        for name, variant in plan.variants.items():
            per = [capability_batch(lm, b, ks, variant, means, on_k=tick) for b in parts]
            clean = sum((p["clean"] for p in per), [])
            scores = [sum((p["score"][j] for p in per), []) for j in range(len(ks))]
            summaries[name] = summarize_capability(ks, clean, scores, plan.task_tolerance, run.n_boot)
        write_json(done, {"task": task.description, "chance": task.chance, "summaries": summaries})
        out[task_name] = summaries
    return out


def _profile(lm, spec, run: DepthRun, plan: HorizonPlan, batches, ks, means, folder: RunFolder, progress, console):
    """The per-layer profile, checkpointed after every batch."""
    variant = plan.profile_variant()
    passes, equivalent = profile_cost(lm.n_layers, ks)
    console.print(
        f"per-layer profile of {slug(spec)}: windows {','.join(map(str, ks))}; {passes} passes per batch "
        f"(each from its layer up: about {equivalent:.0f} full forward passes) x {len(batches)} batches"
    )
    ckpt = folder.path(slug(spec), "profile-checkpoint.json")
    config = {"ks": ks, "variant": variant.to_dict(), "text": asdict(run.text), "version": __version__}
    state = json.loads(ckpt.read_text()) if ckpt.is_file() else {"config": config, "batches": {}}
    check_settings(state.get("config"), config, ckpt, "pass --restart to start over")
    bar = progress.add_task(f"profile {slug(spec)}", total=len(batches) * passes)
    progress.advance(bar, len(state["batches"]) * passes)
    for i, ids in enumerate(batches):
        if str(i) not in state["batches"]:
            state["batches"][str(i)] = profile_batch(lm, ids, ks, variant, means, on_cell=lambda: progress.advance(bar))
            write_json(ckpt, state)
    ordered = [state["batches"][str(i)] for i in range(len(batches))]
    joined = {
        m: [[sum((b[m][n][j] for b in ordered), []) for j in range(len(ks))] for n in range(lm.n_layers)]
        for m in ordered[0]
    }
    summary = summarize_profile(ks, joined, plan.thresholds.get("delta_ce", 0.1))
    return {**summary, "variant": variant.to_dict(), "variant_text": variant.describe()}

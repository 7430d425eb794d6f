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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from .._version import __version__
from ..core.corpus import token_sequences
from ..core.io import write_csv, write_json
from ..core.models import LoadedModel, load_model
from ..core.runs import RunFolder, check_settings, model_info, package_versions, progress_bar, slug
from ..core.validate import BadNumberError, finite, whole
from ..render import html
from . import figures
from .horizon import HorizonVariant, check_ks, horizon_batch, output_means, summarize_horizon
from .norms import measure_norms


@dataclass(frozen=True)
class TextSpec:
    """Which natural text: the source, N sequences of T tokens, the batch size and selection seed."""

    source: str = "wikipedia"
    n: int = 64
    seq_len: int = 128
    batch_size: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        whole(self.n, "the number of sequences (--n)", 1)
        whole(self.seq_len, "tokens per sequence (--seq-len)", 3)  # positions 1..T-2 are scored
        whole(self.batch_size, "the batch size (--batch-size)", 1)
        whole(self.seed, "the selection seed (--seed)", 0)
        if not isinstance(self.source, str) or not self.source.strip():
            raise BadNumberError(f"the text source (--text) must be a name or a file path, got {self.source!r}")


@dataclass
class DepthRun:
    models: list[str]
    out: Path
    text: TextSpec = field(default_factory=TextSpec)
    fit_range: tuple[float, float] = (0.2, 0.8)
    n_boot: int = 1000
    overwrite: bool = False
    dtype: str = "float32"
    device: str = "cpu"
    restart: bool = False  # discard an unfinished run in `<out>.partial` made with other settings
    trust_remote_code: bool = False  # run Python code shipped in a model folder (see load_model)

    def __post_init__(self) -> None:
        whole(self.n_boot, "bootstrap resamples (--n-boot)", 1)
        lo, hi = (finite(x, "the growth fit range (--fit-range)", 0.0, 1.0) for x in self.fit_range)
        if not lo < hi:
            raise BadNumberError(f"the growth fit range (--fit-range) must be two fractions lo < hi, got {lo:g},{hi:g}")
        self.fit_range = (lo, hi)
        if not self.models:
            raise BadNumberError("name at least one model")

    def settings(self, kind: str, **more) -> dict:
        """What the folder's results depend on (the run folder resumes only a run with equal settings)."""
        base = {"text": asdict(self.text), "fit_range": list(self.fit_range), "n_boot": self.n_boot}
        return {"kind": kind, "models": list(self.models), **base, "dtype": self.dtype, "version": __version__} | more


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
        lm = lent or load_model(spec, dtype=run.dtype, device=run.device, trust_remote_code=run.trust_remote_code)
        console.print(f"[bold]{spec}[/bold]: {lm.adapter.describe()}, {lm.n_layers} layers, d_model {lm.d_model}")
        yield spec, lm
        del lm
        gc.collect()


def run_norms(run: DepthRun, console: Console | None = None, lm: LoadedModel | None = None) -> tuple[Path, list[dict]]:
    """Norm growth for each model; returns the result folder and one summary row per model.

    `lm`: the already loaded model of a one-model run (loaded from its spec when None).
    """
    console = console or Console()
    folder = RunFolder(run.out, run.settings("norms"), run.overwrite, run.restart)
    rows, lent = [], lm
    with progress_bar(console) as progress:
        for spec, lm in _each_model(run, console, lent):
            result = _norms_for(lm, spec, run, _batches(lm, run.text), folder, progress)
            rows.append(_summary_row(result))
    _write_summary(folder, rows, "norms", run)
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
    if horizon is not None:
        for metric in ("delta_ce", "kl"):
            star = horizon["k_star"].get(metric, {}).get("k")
            row[f"k_star_{metric}"] = star
            row[f"k_star_{metric}_over_layers"] = None if star is None else star / norms["n_layers"]
        row["clean_ce"] = horizon["clean_ce"]
    return row


def run_horizon(
    run: DepthRun,
    ks: list[int] | None = None,
    variant: HorizonVariant | None = None,
    thresholds: dict[str, float] | None = None,
    console: Console | None = None,
    lm: LoadedModel | None = None,
) -> tuple[Path, list[dict]]:
    """The horizon sweep (and norm growth) for each model; returns the folder and summary rows.

    `lm`: the already loaded model of a one-model run (loaded from its spec when None). The thresholds
    only summarize the per-sequence results, so a resumed run may change them.
    """
    console = console or Console()
    variant = variant or HorizonVariant()
    thresholds = thresholds or {"delta_ce": 0.1, "kl": 0.1}
    settings = run.settings("horizon", ks=None if ks is None else list(ks), variant=variant.to_dict())
    folder = RunFolder(run.out, settings, run.overwrite, run.restart)
    rows, lent = [], lm
    with progress_bar(console) as progress:
        for spec, lm in _each_model(run, console, lent):
            sweep_ks = check_ks(ks, lm.n_layers)  # before any work: refuse a k or enforce_from the model lacks
            variant.check(lm.n_layers)
            batches = _batches(lm, run.text)  # tokenized once, for the norms and the sweep
            norms = _norms_for(lm, spec, run, batches, folder, progress)
            per_seq = _sweep(lm, spec, run, batches, sweep_ks, variant, folder, progress)
            summary = summarize_horizon(sweep_ks, per_seq, thresholds, run.n_boot)
            result = {
                **model_info(lm, spec),
                "variant": variant.to_dict(),
                "variant_text": variant.describe(),
                "text": asdict(run.text),
                "scored_positions": "predictions from positions 1..T-2 (position 0 and the last are not scored)",
                **summary,
            }
            base = folder.path(slug(spec))
            write_json(base / "horizon.json", result)
            write_csv(base / "horizon.csv", summary["per_k"])
            figures.horizon_figure(summary, f"{lm.name}: horizon ({variant.describe()})", base / "horizon.png")
            rows.append(_summary_row(norms, result))
    _write_summary(folder, rows, "horizon", run, variant)
    return folder.commit(), rows


def _sweep(lm, spec, run: DepthRun, batches, ks, variant, folder: RunFolder, progress: Progress) -> dict:
    """Per-sequence metrics for every k, checkpointed after every batch."""
    ckpt = folder.path(slug(spec), "horizon-checkpoint.json")
    config = {"ks": ks, "variant": variant.to_dict(), "text": asdict(run.text), "version": __version__}
    state = json.loads(ckpt.read_text()) if ckpt.is_file() else {"config": config, "batches": {}}
    check_settings(state.get("config"), config, ckpt, "pass --restart to start over")
    task = progress.add_task(f"horizon {slug(spec)}", total=len(batches) * len(ks))
    progress.advance(task, len(state["batches"]) * len(ks))
    means = output_means(lm, batches) if variant.fill == "mean" else None
    for i, ids in enumerate(batches):
        if str(i) in state["batches"]:
            continue
        state["batches"][str(i)] = horizon_batch(lm, ids, ks, variant, means, on_k=lambda k: progress.advance(task))
        write_json(ckpt, state)
    ordered = [state["batches"][str(i)] for i in range(len(batches))]
    return {m: [sum((b[m][j] for b in ordered), []) for j in range(len(ordered[0][m]))] for m in ordered[0]}


def _write_summary(folder: RunFolder, rows: list[dict], kind: str, run: DepthRun, variant=None) -> None:
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
        sections.append(("Variant", html.paragraph(variant.describe())))
        if len(rows) > 1:
            for name, key, label in (
                ("kstar_vs_depth.png", "layers", "layers"),
                ("kstar_vs_growth.png", "growth_raw", "norm growth per layer (raw)"),
            ):
                figures.scaling_figure(rows, key, label, folder.path(name))
                sections.append((f"k* against {label}", html.image(folder.path(name), name)))
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


def print_summary(rows: list[dict], console: Console, title: str) -> None:
    """One-screen table of the summary rows."""
    if not rows:
        return
    keys = [k for k in _SHORT if k in rows[0]]
    table = Table(title=title)
    for key in keys:
        table.add_column(_SHORT[key])
    for row in rows:
        table.add_row(*(html.fmt(row.get(k)) for k in keys))
    console.print(table)

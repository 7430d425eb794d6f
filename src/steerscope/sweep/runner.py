"""Run a sweep: fit vectors on pair subsets, measure every setting on validation prompts, choose, and
measure the chosen settings on test prompts; every measured cell goes to the results store at once, and
what was fitted (norms, an SAE method's latent and its ranking) to fits.json.

Order per model and dataset: (1) the unsteered and prompting baselines on both splits; then for each
n_pairs in turn (so an interrupted sweep holds finished curves for the smaller n): (2) for every method
(the reference method first), seed, site and coefficient, a validation cell; (3) selection from
validation rows only; (4) test cells at each site's chosen coefficient and at the reference method's
chosen coefficient for the same n (the matched-norm comparison), with side effects on natural text.
Pair subsets: seed s and n pairs take the first n of numpy default_rng(s).permutation of the train
pairs (so subsets are nested in n). A method is fitted only at the n_pairs its catalogue record takes
(steerscope.methods: actadd one pair, pca and probe two or more). A control method (random: a random
direction with the norm of mean_diff) is a baseline, fitted on `random_n_pairs` pairs, one per seed.
A rerun skips every cell already stored, so an interrupted sweep continues where it stopped (in `<out>.partial/`,
with the same settings; core.runs.RunFolder).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import Progress

from ..core.generate import generate_text
from ..core.io import write_json
from ..core.models import LoadedModel, load_model
from ..core.runs import RunFolder, model_info, package_versions, progress_bar
from ..evaluate.fluency import SideEffectProbe, completion_cross_entropy
from ..evaluate.store import Cell, ResultStore
from ..methods import METHODS, Intervention, at_site, fit_intervention, method_names, method_sites
from ..steering.pairs import ContrastPair
from .config import SweepConfig
from .datasets import ConceptTask, get_task
from .protocol import select

STORE_NAME = "results.sqlite"
FITS_NAME = "fits.json"
PROVENANCE_NAME = "provenance.json"
NO_SITE = "-"


@dataclass(frozen=True)
class VectorSpec:
    method: str
    n_pairs: int
    seed: int


def pair_subset(pairs: list[ContrastPair], n: int, seed: int) -> list[ContrastPair]:
    """The first n pairs of a seeded permutation (nested in n for a fixed seed)."""
    if n > len(pairs):
        raise ValueError(f"asked for {n} pairs but the train split has {len(pairs)}; lower n_pairs")
    order = np.random.default_rng(seed).permutation(len(pairs))
    return [pairs[int(i)] for i in order[:n]]


def vector_specs(config: SweepConfig) -> list[VectorSpec]:
    """Every (method, n_pairs, seed) the sweep fits (only the n_pairs a method takes), the controls last."""
    specs = [
        VectorSpec(m, n, s) for m in config.methods for n in config.n_pairs if METHODS[m].takes(n) for s in config.seeds
    ]
    for control in (m for m in method_names(control=True) if m in config.baselines):
        specs += [VectorSpec(control, config.random_pairs, s) for s in config.seeds]
    return specs


def _fit(
    lm: LoadedModel, spec: VectorSpec, pairs: list[ContrastPair], sites: list[str], options: dict
) -> tuple[Intervention, dict[str, float]]:
    subset = pair_subset(pairs, spec.n_pairs, spec.seed)
    return fit_intervention(lm, spec.method, subset, sites, spec.seed, options.get(spec.method, {}))


class SweepRunner:
    """State of one sweep run; `run()` does the work."""

    def __init__(
        self,
        config: SweepConfig,
        out: str | Path,
        console: Console | None = None,
        on_cell: Callable[[Cell], None] | None = None,
        models: dict[str, LoadedModel] | None = None,
        lm: LoadedModel | None = None,
        overwrite: bool = False,
        restart: bool = False,
    ):
        self.config = config
        self.console = console or Console()
        self.on_cell = on_cell
        self.preloaded = dict(models or {})
        if lm is not None:
            if len(config.models) != 1:
                raise ValueError(f"a loaded model stands for one model spec, but the sweep names {len(config.models)}")
            self.preloaded[config.models[0]] = lm
        tasks = {name: get_task(name, config.custom_datasets) for name in config.datasets}
        defined = {name: {**asdict(t), "split_prompts": t.split_prompts()} for name, t in tasks.items()}
        settings = {**config.settings(), "dataset_definitions": defined}  # the grid and what each dataset holds
        self.folder = RunFolder(out, settings, overwrite, restart)
        self.out = self.folder.path()  # the partial folder until the sweep is complete
        self.store = ResultStore(self.out / STORE_NAME, n_boot=config.n_boot)
        self.store.check_settings(settings)
        write_json(self.out / "config.json", asdict(config))
        self.done = self.store.done()
        self.selections: dict[str, dict] = {}
        self.sites_of: dict[str, list[str]] = {}
        fits = self.out / FITS_NAME
        self.fits: dict[str, dict] = json.loads(fits.read_text(encoding="utf-8")) if fits.is_file() else {}

    # --- measuring one cell -------------------------------------------------------------------------

    def _generate(self, lm: LoadedModel, prompts: list[str]) -> list[str]:
        g = self.config.generation
        out: list[str] = []
        for start in range(0, len(prompts), g.batch_size):
            out += generate_text(
                lm,
                prompts[start : start + g.batch_size],
                max_new_tokens=g.max_new_tokens,
                do_sample=g.do_sample,
                temperature=g.temperature,
                seed=g.seed,
                repetition_penalty=g.repetition_penalty,
            )
        return out

    def _measure(
        self,
        cell: Cell,
        lm: LoadedModel,
        task: ConceptTask,
        prompts: list[str],
        intervention: Callable[[], AbstractContextManager],
        base_ce: np.ndarray | None,
        shown: list[str] | None = None,
        side_effects: SideEffectProbe | None = None,
        cost: dict[str, float] | None = None,
    ) -> None:
        """Generate under the intervention, score, and store the cell (skipped when already stored)."""
        if cell.key in self.done:
            return
        with intervention():
            texts = self._generate(lm, shown or prompts)
        metrics = dict(task.score(texts))
        ce = completion_cross_entropy(lm, prompts, texts)
        metrics["fluency_ce"] = ce
        metrics["fluency_cost"] = ce - (ce if base_ce is None else base_ce)
        if side_effects is not None:
            metrics.update(side_effects.measure(intervention))
        metrics.update({name: [value] for name, value in (cost or {}).items()})
        self.store.write(cell, metrics, texts)
        self.done.add(cell.key)
        self._advance(cell)

    def _advance(self, cell: Cell) -> None:
        if self.progress is not None:
            self.progress.advance(self.task_id)
        if self.on_cell is not None:
            self.on_cell(cell)

    # --- the sweep ----------------------------------------------------------------------------------

    def planned_cells(self) -> int:
        c = self.config
        per_dataset = 2 * (1 + ("prompting" in c.baselines))
        sites = sum(len(self._sites(spec.method)) for spec in vector_specs(c))
        per_dataset += sites * len(c.coefficients) + sites  # test: at least one cell per site
        return per_dataset * len(c.datasets) * len(c.models)

    def run(self) -> Path:
        """Run (or resume) the whole sweep; returns the store's path."""
        with progress_bar(self.console) as progress:
            self.progress = progress
            self.task_id = progress.add_task("sweep", total=self.planned_cells(), completed=len(self.done))
            for model in self.config.models:
                lm = self.preloaded.get(model) or load_model(model, dtype=self.config.dtype, device=self.config.device)
                self._record_provenance(model, lm)
                probe = self._side_effect_probe(lm)
                for dataset in self.config.datasets:
                    self._run_dataset(model, lm, get_task(dataset, self.config.custom_datasets), probe)
        self.progress = None
        self.store.close()
        return self.folder.commit() / STORE_NAME

    def _record_provenance(self, model: str, lm: LoadedModel) -> None:
        """Which model each spec loaded and the package versions, in provenance.json."""
        path = self.out / PROVENANCE_NAME
        record = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"models": {}}
        record["models"][model] = model_info(lm, model)
        write_json(path, {**record, "versions": package_versions()})

    progress: Progress | None = None
    task_id: int = 0

    def _side_effect_probe(self, lm: LoadedModel) -> SideEffectProbe | None:
        s = self.config.side_effects
        if not s.enabled:
            return None
        return SideEffectProbe.prepare(lm, s.source, s.n, s.seq_len, s.batch_size, s.seed)

    def _baseline_ce(self, model: str, dataset: str, split: str) -> np.ndarray:
        rows = self.store.rows(model=model, dataset=dataset, split=split, method="unsteered", metric="fluency_ce")
        return np.asarray(rows[0]["items"], dtype=np.float64)

    def _run_dataset(self, model: str, lm: LoadedModel, task: ConceptTask, probe: SideEffectProbe | None) -> None:
        c = self.config
        prompts = task.split_prompts()
        pairs = task.train_pairs()
        self.progress.update(self.task_id, description=f"{model} / {task.name}: baselines")
        base_ce = {}
        for split, ps in prompts.items():
            cell = Cell(model, "unsteered", NO_SITE, 0.0, 0, 0, task.name, split)
            self._measure(cell, lm, task, ps, nullcontext, None)
            base_ce[split] = self._baseline_ce(model, task.name, split)
            if "prompting" in c.baselines:
                cell = Cell(model, "prompting", NO_SITE, 0.0, 0, 0, task.name, split)
                shown = task.prompted(lm.tokenizer, ps)
                self._measure(cell, lm, task, ps, nullcontext, base_ce[split], shown=shown)
        specs = vector_specs(c)
        vectors: dict[VectorSpec, tuple[Intervention, dict[str, float]]] = {}

        def vector(spec: VectorSpec) -> tuple[Intervention, dict[str, float]]:
            if spec not in vectors:
                vectors[spec] = _fit(lm, spec, pairs, self._sites(spec.method), c.method_options)
                self.fits[f"{model} / {task.name} / {_label(spec)}"] = fit_summary(spec, *vectors[spec])
                write_json(self.out / FITS_NAME, self.fits)
            return vectors[spec]

        def cell(spec: VectorSpec, site: str, coef: float, split: str) -> Cell:
            return Cell(model, spec.method, site, float(coef), spec.n_pairs, spec.seed, task.name, split)

        for _n, group in _by_n_pairs(specs, c.reference_method):
            for spec in group:
                self.progress.update(self.task_id, description=f"{model} / {task.name}: validation {_label(spec)}")
                for site, coef in self._grid(spec.method):
                    todo = cell(spec, site, coef, "validation")
                    if todo.key not in self.done:
                        v = at_site(vector(spec)[0], site)
                        applier = _applier(lm, v, coef)
                        self._measure(todo, lm, task, prompts["validation"], applier, base_ce["validation"])
            choices = select(
                self.store.rows(model=model, dataset=task.name, split="validation"),
                task.effect_metric,
                c.selection.max_fluency_cost,
            )
            self.selections[f"{model} / {task.name}"] = _choices_json(choices)
            write_json(self.out / "selection.json", self.selections)
            for spec in group:
                self.progress.update(self.task_id, description=f"{model} / {task.name}: test {_label(spec)}")
                for site in self._sites(spec.method):
                    for coef in self._test_coefficients(choices["per_site"], model, task.name, spec, site):
                        todo = cell(spec, site, coef, "test")
                        if todo.key not in self.done:
                            fitted, cost = vector(spec)
                            applier = _applier(lm, at_site(fitted, site), coef)
                            test = prompts["test"]
                            self._measure(todo, lm, task, test, applier, base_ce["test"], side_effects=probe, cost=cost)
            for spec in group:
                vectors.pop(spec, None)

    def _sites(self, method: str) -> list[str]:
        """The sites `method` is fitted at (an SAE method: its SAE's site), read once per method."""
        if method not in self.sites_of:
            options = self.config.method_options.get(method, {})
            self.sites_of[method] = method_sites(method, self.config.sites, options)
        return self.sites_of[method]

    def _grid(self, method: str) -> Iterator[tuple[str, float]]:
        for site in self._sites(method):
            for coef in self.config.coefficients:
                yield site, float(coef)

    def _test_coefficients(self, per_site: dict, model: str, dataset: str, spec: VectorSpec, site: str) -> list:
        """The method's own choice at this site, and the reference method's (matched norm) at the same n."""
        coefs = []
        own = per_site.get((model, dataset, spec.method, spec.n_pairs, site))
        if own is not None:
            coefs.append(own.coefficient)
        ref = per_site.get((model, dataset, self.config.reference_method, spec.n_pairs, site))
        if ref is not None and ref.coefficient not in coefs:
            coefs.append(ref.coefficient)
        if self.progress is not None and len(coefs) > 1:
            task = self.progress.tasks[self.task_id]
            self.progress.update(self.task_id, total=task.total + len(coefs) - 1)
        return coefs


def fit_summary(spec: VectorSpec, fitted: Intervention, cost: dict[str, float]) -> dict:
    """What was fitted, for the record: norms per site, an SAE method's latent and how it ranked, and the cost."""
    meta = fitted.meta
    out: dict = {"method": spec.method, "n_pairs": spec.n_pairs, "seed": spec.seed, "norms": meta.get("norms")}
    for key in ("latent", "chosen_by", "ranking_top", "scale"):
        if key in meta:
            out[key] = meta[key]
    return {**out, "cost": cost}


def _by_n_pairs(specs: list[VectorSpec], reference: str) -> list[tuple[int, list[VectorSpec]]]:
    """Specs grouped by n_pairs (ascending), the reference method first and the controls (random) last."""
    rank = lambda s: (s.method != reference, METHODS[s.method].control)  # noqa: E731
    groups = sorted({s.n_pairs for s in specs})
    return [(n, sorted((s for s in specs if s.n_pairs == n), key=rank)) for n in groups]


def _applier(lm: LoadedModel, fitted: Intervention, coef: float) -> Callable[[], AbstractContextManager]:
    return lambda: fitted.apply(lm, coef)


def _label(spec: VectorSpec) -> str:
    return f"{spec.method} n={spec.n_pairs} seed={spec.seed}"


def _choices_json(choices: dict) -> dict:
    return {
        kind: [{"setting": list(key), **asdict(choice)} for key, choice in table.items()]
        for kind, table in choices.items()
    }


def run_sweep(config: SweepConfig, out: str | Path, **kwargs) -> Path:
    """Run or resume a sweep into the run folder `out` (results.sqlite, config.json, selection.json, fits.json,
    provenance.json); returns the store's path. It is written in `<out>.partial/` (core.runs.RunFolder): an
    interrupted sweep resumes there with equal settings and is refused, naming the ones that differ, otherwise.
    kwargs: console, on_cell, models (spec -> loaded model), lm (the loaded model of a one-model sweep),
    overwrite (replace a finished `out`), restart (discard an unfinished run)."""
    return SweepRunner(config, out, **kwargs).run()

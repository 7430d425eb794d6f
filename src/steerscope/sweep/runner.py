"""Run a sweep: fit vectors on pair subsets, measure every setting on validation prompts, choose, and
measure the chosen settings on test prompts; every measured cell goes to the results store as it arrives, and
what was fitted (norms, an SAE method's latent and its ranking) to fits.json.

This module is the driver: it plans the cells, hands them to an engine (sweep/engines.py: this process, or
Ray workers that each load a model once and measure many cells; sweep/cells.py measures one) and is the
only writer of the run folder, so a cell is committed exactly once, when its result arrives.

Order per model, in waves of cells whose inputs are stored: (1) the unsteered baselines of every dataset and
split (every fluency cost is relative to them); (2) the prompting baselines and, for the smallest n_pairs, a
validation cell for every method (the reference method first), seed, site and coefficient; then for each
n_pairs in turn (so an interrupted sweep holds finished curves for the smaller n): (3) selection from
validation rows only, and (4) test cells at each site's chosen coefficient and at the reference method's
chosen coefficient for the same n (the matched-norm comparison), with side effects on natural text, beside
the validation cells of the next n. Pair subsets: seed s and n pairs take the first n of numpy
default_rng(s).permutation of the train pairs (so subsets are nested in n). A method is fitted only at the
n_pairs its catalogue record takes (steerscope.methods: actadd one pair, pca and probe two or more). A control
method (random: a random direction with the norm of mean_diff) is a baseline, fitted on `random_n_pairs`
pairs, one per seed. A cell that fails is recorded (failures.json) and the others go on; cells that need it
(a failed unsteered baseline, or a validation cell the selection needs) wait for a rerun. A rerun skips every
cell already stored, so an interrupted sweep continues where it stopped (in `<out>.partial/`, with the same
settings; core.runs.RunFolder).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from rich.text import Text

from ..core.errors import SteerscopeError
from ..core.io import write_json
from ..core.models import LoadedModel
from ..core.runs import RunFolder, package_versions, progress_bar
from ..evaluate.store import Cell, ResultStore
from ..methods import METHODS, method_names, method_sites
from ..steering.tasks import SPLITS, ConceptTask, get_task, is_ab
from .cells import CellJob, CellResult, VectorSpec, fit_summary, pair_subset  # noqa: F401  (re-exported)
from .config import ConfigError, SweepConfig
from .engines import CellEngine, engine_for
from .files import FAILURES_NAME, FITS_NAME, NO_SITE, PROVENANCE_NAME, STORE_NAME  # noqa: F401  (re-exported)
from .per_item import write_per_item
from .protocol import select


class SweepIncompleteError(SteerscopeError, RuntimeError):
    """Some cells failed (or waited on one that did); the rest are stored and a rerun retries the missing ones."""


def vector_specs(config: SweepConfig) -> list[VectorSpec]:
    """Every (method, n_pairs, seed) the sweep fits (only the n_pairs a method takes), the controls last."""
    specs = [
        VectorSpec(m, n, s) for m in config.methods for n in config.n_pairs if METHODS[m].takes(n) for s in config.seeds
    ]
    for control in (m for m in method_names(control=True) if m in config.baselines):
        specs += [VectorSpec(control, config.random_pairs, s) for s in config.seeds]
    return specs


class SweepRunner:
    """State of one sweep run (the driver: it plans the cells, hands them to an engine and is the only writer of
    the run folder); `run()` does the work."""

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
        engine: CellEngine | None = None,
    ):
        self.config = config
        self.console = console or Console()
        self.on_cell = on_cell
        self.preloaded = dict(models or {})
        if lm is not None:
            if len(config.models) != 1:
                raise ValueError(f"a loaded model stands for one model spec, but the sweep names {len(config.models)}")
            self.preloaded[config.models[0]] = lm
        self.own_engine = engine is None  # made here (Ray connected before any file is written), closed by run()
        self.engine = engine or engine_for(config, self.preloaded)
        try:
            self._open(out, overwrite, restart)
        except BaseException:
            self._close_engine()
            raise

    def _open(self, out: str | Path, overwrite: bool, restart: bool) -> None:
        config = self.config
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
        self.failures: dict[str, dict] = {}  # cell key -> the cell, its error and the worker
        self.blocked: dict[str, str] = {}  # what was not measured -> the failure it waited on
        self.recorded: set[str] = set()  # models whose provenance this run wrote
        fits = self.out / FITS_NAME
        self.fits: dict[str, dict] = json.loads(fits.read_text(encoding="utf-8")) if fits.is_file() else {}

    progress: Progress | None = None
    task_id: int = 0

    # --- the sweep ----------------------------------------------------------------------------------

    def planned_cells(self) -> int:
        c = self.config
        per_dataset = 2 * (1 + ("prompting" in c.baselines))
        sites = sum(len(self._sites(spec.method)) for spec in vector_specs(c))
        per_dataset += sites * len(c.coefficients) + sites  # test: at least one cell per site
        return per_dataset * len(c.datasets) * len(c.models)

    def run(self) -> Path:
        """Run (or resume) the whole sweep; returns the store's path. Raises SweepIncompleteError, after measuring
        every cell it could, when some failed (the run stays unfinished, so a rerun retries just those)."""
        try:
            with progress_bar(self.console) as progress:
                self.progress = progress
                self.task_id = progress.add_task("sweep", total=self.planned_cells(), completed=len(self.done))
                for model in self.config.models:
                    self._run_model(model, self.engine)
        finally:
            self.progress = None
            self._close_engine()
        write_per_item(self.store, self.out, self.config.custom_datasets)
        self.store.close()
        self._report_failures()
        return self.folder.commit() / STORE_NAME

    def _close_engine(self) -> None:
        if self.own_engine:
            self.engine.close()

    def _run_model(self, model: str, engine: CellEngine) -> None:
        """The cells of one model in waves, each wave holding only cells whose inputs are stored: the unsteered
        baselines; then prompting and the validation cells of the smallest n; then, for each n, the test cells at
        the choices made on its validation cells beside the validation cells of the next n."""
        tasks = [get_task(name, self.config.custom_datasets) for name in self.config.datasets]
        groups = [group for _n, group in _by_n_pairs(vector_specs(self.config), self.config.reference_method)]
        where = f"{model} ({engine.description})"
        unsteered = [self._baseline(model, task, "unsteered", split) for task in tasks for split in SPLITS]
        self._wave(engine, unsteered, f"{where}: baselines")
        for i in range(len(groups) + 1):
            jobs: list[CellJob | None] = []
            if i == 0 and "prompting" in self.config.baselines:
                jobs += [self._baseline(model, task, "prompting", split) for task in tasks for split in SPLITS]
            if i > 0:
                jobs += [job for task in tasks for job in self._test_jobs(model, task, groups[i - 1])]
            if i < len(groups):
                jobs += [job for task in tasks for job in self._validation_jobs(model, task, groups[i])]
            label = f"n={groups[min(i, len(groups) - 1)][0].n_pairs}" if groups else ""
            self._wave(engine, jobs, f"{where}: {label}")

    def _wave(self, engine: CellEngine, jobs: list[CellJob | None], description: str) -> None:
        todo = [job for job in jobs if job is not None]
        if todo and self.progress is not None:
            self.progress.update(self.task_id, description=description)
        engine.run(self.config, todo, self._collect)

    # --- the jobs -----------------------------------------------------------------------------------

    def _base_ce(self, model: str, dataset: str, split: str) -> tuple[float, ...] | None:
        rows = self.store.rows(model=model, dataset=dataset, split=split, method="unsteered", metric="fluency_ce")
        return tuple(float(x) for x in rows[0]["items"]) if rows else None

    def _job(self, cell: Cell, spec: VectorSpec | None = None, test: bool = False) -> CellJob | None:
        """The job of a cell not yet stored (None when it is, or when its unsteered baseline failed)."""
        if cell.key in self.done:
            return None
        base_ce = None
        if cell.method != "unsteered":
            base_ce = self._base_ce(cell.model, cell.dataset, cell.split)
            if base_ce is None:
                self.blocked[cell.key] = f"the unsteered {cell.split} baseline of {cell.model} / {cell.dataset} failed"
                return None
        return CellJob(cell, spec, base_ce, test)

    def _baseline(self, model: str, task: ConceptTask, method: str, split: str) -> CellJob | None:
        return self._job(Cell(model, method, NO_SITE, 0.0, 0, 0, task.name, split))

    def _cell(self, model: str, task: ConceptTask, spec: VectorSpec, site: str, coef: float, split: str) -> Cell:
        return Cell(model, spec.method, site, float(coef), spec.n_pairs, spec.seed, task.name, split)

    def _validation_jobs(self, model: str, task: ConceptTask, group: list[VectorSpec]) -> list[CellJob | None]:
        return [
            self._job(self._cell(model, task, spec, site, coef, "validation"), spec)
            for spec in group
            for site, coef in self._grid(spec.method)
        ]

    def _test_jobs(self, model: str, task: ConceptTask, group: list[VectorSpec]) -> list[CellJob | None]:
        """Test cells at the settings chosen on validation. A method's test cells wait while one of its validation
        cells (or one of the reference method's) at this n is missing: a choice made on part of the grid would
        be stored for good."""
        missing: dict[str, str] = {}
        for spec in group:
            for site, coef in self._grid(spec.method):
                key = self._cell(model, task, spec, site, coef, "validation").key
                if key not in self.done:
                    missing.setdefault(spec.method, key)
        ready = []
        for spec in group:
            waits_on = missing.get(spec.method) or missing.get(self.config.reference_method)
            if waits_on is None:
                ready.append(spec)
            else:
                self.blocked[f"{model} / {task.name} / {spec.label}: test cells"] = f"validation cell {waits_on}"
        if not ready:
            return []
        choices = select(
            self.store.rows(model=model, dataset=task.name, split="validation"),
            task.effect_metric,
            self.config.selection.max_fluency_cost,
        )
        self.selections[f"{model} / {task.name}"] = _choices_json(choices)
        write_json(self.out / "selection.json", self.selections)
        return [
            self._job(self._cell(model, task, spec, site, coef, "test"), spec, test=True)
            for spec in ready
            for site in self._sites(spec.method)
            for coef in self._test_coefficients(choices["per_site"], model, task.name, spec, site)
        ]

    # --- results (the driver is the only writer) ----------------------------------------------------

    def _collect(self, result: CellResult) -> None:
        """Store one cell's result as it arrives (or record its failure), exactly once per cell."""
        cell = result.job.cell
        if result.model is not None and cell.model not in self.recorded:
            self._record_provenance(cell.model, result.model)
            self.recorded.add(cell.model)
        new_fits = {k: v for k, v in result.fits.items() if k not in self.fits}
        if new_fits:
            self.fits.update(new_fits)
            write_json(self.out / FITS_NAME, self.fits)
        if cell.key in self.done:  # a result for a cell already stored is never written twice
            return
        if result.error is not None:
            self.failures[cell.key] = {**asdict(cell), "error": result.error, "worker": result.worker,
                                       "traceback": result.detail}  # fmt: skip
        else:
            assert result.metrics is not None
            self.store.write(cell, result.metrics, result.texts)
            self.done.add(cell.key)
            self.failures.pop(cell.key, None)
            if self.on_cell is not None:
                self.on_cell(cell)
        if self.progress is not None:
            self.progress.advance(self.task_id)

    def _record_provenance(self, model: str, info: dict) -> None:
        """Which model each spec loaded and the package versions, in provenance.json."""
        path = self.out / PROVENANCE_NAME
        record = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"models": {}}
        record["models"][model] = info
        write_json(path, {**record, "versions": package_versions()})

    def _report_failures(self) -> None:
        """failures.json, a table of what failed and one SweepIncompleteError; nothing when every cell is stored."""
        path = self.out / FAILURES_NAME
        if not self.failures and not self.blocked:
            path.unlink(missing_ok=True)
            return
        write_json(path, {"failed": list(self.failures.values()), "not_measured": self.blocked})
        table = Table(title="cells that failed")
        for column in ("model", "method", "site", "coefficient", "n_pairs", "seed", "dataset", "split", "error"):
            table.add_column(column)
        for f in self.failures.values():
            table.add_row(*(Text(str(f[k])) for k in ("model", "method", "site", "coefficient", "n_pairs", "seed",
                                                      "dataset", "split", "error")))  # fmt: skip
        self.console.print(table)
        errors = Counter(f["error"] for f in self.failures.values())
        common = "; ".join(f"{n} x {error}" for error, n in errors.most_common(3))
        raise SweepIncompleteError(
            f"{len(self.failures)} cell(s) failed ({common}) and {len(self.blocked)} more waited on them; the "
            f"{len(self.done)} others are stored in {self.out}; see {path} and rerun the same command to retry "
            "the missing ones"
        )

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


def _by_n_pairs(specs: list[VectorSpec], reference: str) -> list[tuple[int, list[VectorSpec]]]:
    """Specs grouped by n_pairs (ascending), the reference method first and the controls (random) last."""
    rank = lambda s: (s.method != reference, METHODS[s.method].control)  # noqa: E731
    groups = sorted({s.n_pairs for s in specs})
    return [(n, sorted((s for s in specs if s.n_pairs == n), key=rank)) for n in groups]


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
    overwrite (replace a finished `out`), restart (discard an unfinished run), engine (sweep.engines; default:
    Ray workers when `config.ray` is set, else this process). Cells that failed raise SweepIncompleteError at
    the end, after every other cell is stored. A sweep of A/B datasets (CAA items) runs in sweep/ab.py."""
    if any(is_ab(get_task(name, config.custom_datasets)) for name in config.datasets):
        from .ab import run_ab_sweep  # here, not at the top: an A/B sweep needs its own modules only then

        if config.ray is not None:
            raise ConfigError("A/B sweeps (CAA items) run in this process, not on Ray; drop --ray and the [ray] table")

        return run_ab_sweep(config, out, **kwargs)
    return SweepRunner(config, out, **kwargs).run()

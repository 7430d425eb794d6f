"""A sweep over A/B datasets (CAA's behaviour benchmark): fit on the train items' answer letters, pick the site
by CAA's layer sweep on validation items, report P(behaviour-matching answer) on test items over multipliers.

Per model: (1) unsteered P on validation and test; (2) for each n_pairs in turn, every method and seed is
fitted on the train split (pairs: the prompt followed by the matching / the other letter, read at that letter:
CAA's mean difference at the answer-letter position for `mean_diff`) at every swept site in one pass, and each
site is measured on validation at multipliers -1 and +1; (3) one site per model, method and n_pairs for all
behaviours, the one whose P(+1) - P(-1) averaged over the datasets is largest (protocol.select_ab_sites, CAA's
single layer); (4) test cells at that site at CAA's multipliers -1, -0.5, +0.5, +1 and +-c for every swept
coefficient (multiplier 0 is the unsteered cell), with side effects on natural text; the control (random: a
random direction of the mean difference's norm) at the reference method's site. The vector is added at the
reply's opening, the tokens after the instruction (evaluate.behaviour, as CAA adds after "[/INST]"); side
effects add it at every position of the natural text. Every cell goes to the results store as it is measured,
so an interrupted sweep resumes (core.runs.RunFolder); it runs in this process ([ray] is for generation sweeps).
Each cell stores P and the logit difference per item (per-item slopes: sweep/per_item.py, per_item.csv at the
end); with a [panel] table every fitted vector is also measured on the other behaviours (sweep/panel.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from rich.console import Console

from ..core.io import write_json
from ..core.loading import load_model
from ..core.models import LoadedModel
from ..core.runs import RunFolder, model_info, package_versions, progress_bar
from ..evaluate.behaviour import behaviour_scores
from ..evaluate.fluency import SideEffectProbe
from ..evaluate.store import Cell, ResultStore
from ..methods import METHODS, Intervention, at_site, fit_intervention, method_names
from ..steering.tasks import AB_LOGIT_METRIC, AB_METRIC, ABTask, get_task, is_ab
from .cells import VectorSpec, fit_summary, pair_subset
from .config import ConfigError, SweepConfig
from .files import FITS_NAME, NO_SITE, PROVENANCE_NAME, STORE_NAME
from .panel import measure_panel, open_panel, panel_targets
from .per_item import write_per_item
from .protocol import SELECT_MULTIPLIERS, ab_layer_sweep, ab_multipliers, select_ab_sites

SELECTION_NAME = "selection.json"


def ab_tasks(config: SweepConfig) -> list[ABTask]:
    """The config's datasets as A/B tasks; a ConfigError when any is not one or a method cannot read a letter."""
    tasks = [get_task(name, config.custom_datasets) for name in config.datasets]
    other = [t.name for t in tasks if not is_ab(t)]
    if other:
        raise ConfigError(
            f"datasets {other} generate text and the others are A/B items; put A/B datasets in a sweep of their own"
        )
    for m in config.methods:
        if "last" not in METHODS[m].reads:
            raise ConfigError(
                f"{m} cannot read the answer letter of an A/B item; A/B sweeps take methods that read 'last'"
            )
    if getattr(config, "ray", None):
        raise ConfigError("A/B sweeps run in this process; remove the [ray] table")
    return [t for t in tasks if isinstance(t, ABTask)]


class ABSweep:
    """State of one A/B sweep run; `run()` does the work (same arguments as sweep.runner.SweepRunner)."""

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
        engine: object | None = None,
    ):
        if engine is not None:
            raise ConfigError("A/B sweeps run in this process; they take no engine")
        self.config, self.console, self.on_cell = config, console or Console(), on_cell
        self.tasks = ab_tasks(config)
        self.preloaded = dict(models or {})
        if lm is not None:
            if len(config.models) != 1:
                raise ValueError(f"a loaded model stands for one model spec, but the sweep names {len(config.models)}")
            self.preloaded[config.models[0]] = lm
        settings = {**config.settings(), "dataset_definitions": {t.name: t.definition() for t in self.tasks}}
        self.folder = RunFolder(out, settings, overwrite, restart)
        self.out = self.folder.path()
        self.store = ResultStore(self.out / STORE_NAME, n_boot=config.n_boot)
        self.store.check_settings(settings)
        write_json(self.out / "config.json", {k: v for k, v in asdict(config).items() if k != "ray"})
        self.done = self.store.done()
        self.panel_store, self.panel_done, self.targets = None, set(), []
        if config.panel is not None:  # the side-effect panel (sweep/panel.py): its files are read before any work
            self.targets = panel_targets(self.tasks, config.panel)
            self.panel_store = open_panel(self.out, settings, config.panel, config.n_boot)
            self.panel_done = self.panel_store.done()
        fits = self.out / FITS_NAME
        self.fits: dict[str, dict] = json.loads(fits.read_text(encoding="utf-8")) if fits.is_file() else {}
        self.selections: dict[str, list] = {}
        self._pairs: dict[str, list] = {}
        self._fitted: dict[tuple, tuple[Intervention, dict]] = {}
        self.progress = None
        self.task_id = 0

    def planned_cells(self) -> int:
        c = self.config
        fitted = [VectorSpec(m, n, s) for m in c.methods for n in c.n_pairs if METHODS[m].takes(n) for s in c.seeds]
        controls = len(self._controls()) * len(c.seeds)
        test = len(ab_multipliers(c.coefficients)) - 1
        per_task = 2 + len(fitted) * (len(c.sites) * len(SELECT_MULTIPLIERS) + test) + controls * test
        return per_task * len(self.tasks) * len(c.models)

    def _controls(self) -> list[str]:
        return [m for m in method_names(control=True) if m in self.config.baselines]

    def run(self) -> Path:
        """Run (or resume) the sweep; returns the store's path."""
        with progress_bar(self.console) as progress:
            self.progress = progress
            self.task_id = progress.add_task("A/B sweep", total=self.planned_cells(), completed=len(self.done))
            for model in self.config.models:
                c = self.config
                lm = self.preloaded.get(model) or load_model(
                    model,
                    dtype=c.dtype,
                    device=c.device,
                    device_map=c.device_map or None,
                    max_memory=c.max_memory or None,
                )
                self._record_provenance(model, lm)
                self._run_model(model, lm)
        self.progress = None
        write_per_item(self.store, self.out, self.config.custom_datasets)
        self.store.close()
        if self.panel_store is not None:
            self.panel_store.close()
        return self.folder.commit() / STORE_NAME

    def _record_provenance(self, model: str, lm: LoadedModel) -> None:
        path = self.out / PROVENANCE_NAME
        record = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"models": {}}
        record["models"][model] = model_info(lm, model)
        write_json(path, {**record, "versions": package_versions()})

    # --- cells ------------------------------------------------------------------------------------

    def _score(self, cell: Cell, lm: LoadedModel, task: ABTask, vector: Intervention | None, extra=None) -> None:
        """P(behaviour) of the cell's split with `vector` at the cell's multiplier; stored at once."""
        if cell.key in self.done:
            return
        items = task.split_items()[cell.split]
        batch = self.config.generation.batch_size
        p, logit_diff = behaviour_scores(lm, items, batch, task.template, vector, cell.coefficient)
        metrics = {AB_METRIC: p, AB_LOGIT_METRIC: logit_diff, **(extra() if extra is not None else {})}
        self.store.write(cell, metrics)
        self.done.add(cell.key)
        if self.progress is not None:
            self.progress.advance(self.task_id)
        if self.on_cell is not None:
            self.on_cell(cell)

    def _run_model(self, model: str, lm: LoadedModel) -> None:
        c = self.config
        for task in self.tasks:
            self.progress.update(self.task_id, description=f"{model} / {task.name}: unsteered")
            for split in ("validation", "test"):
                self._score(Cell(model, "unsteered", NO_SITE, 0.0, 0, 0, task.name, split), lm, task, None)
        probe = None
        if c.side_effects.enabled:
            s = c.side_effects
            probe = SideEffectProbe.prepare(lm, s.source, s.n, s.seq_len, s.batch_size, s.seed)
        self._pairs = {t.name: t.train_pairs(lm.tokenizer) for t in self.tasks}
        for n in sorted(c.n_pairs):
            specs = [VectorSpec(m, n, s) for m in c.methods if METHODS[m].takes(n) for s in c.seeds]
            self._fitted = {}
            for task in self.tasks:
                for spec in specs:
                    self.progress.update(self.task_id, description=f"{model} / {task.name}: layer sweep {_label(spec)}")
                    for site in c.sites:
                        for m in SELECT_MULTIPLIERS:
                            cell = Cell(model, spec.method, site, m, n, spec.seed, task.name, "validation")
                            if cell.key not in self.done:
                                fitted = self._vector(model, lm, task, spec, c.sites)[0]
                                self._score(cell, lm, task, at_site(fitted, site))
            if not specs:
                continue
            rows = self.store.rows(model=model, split="validation", metric=AB_METRIC)
            chosen = {k: v for k, v in select_ab_sites(rows, AB_METRIC).items() if k[0] == model and k[2] == n}
            self._record_selection(rows, chosen)
            controls = [VectorSpec(ctl, c.random_pairs, s) for ctl in self._controls() for s in c.seeds]
            for task in self.tasks:
                for spec in specs + controls:
                    choice = chosen.get((model, spec.method if spec in specs else c.reference_method, n))
                    if choice is not None:
                        self.progress.update(self.task_id, description=f"{model} / {task.name}: test {_label(spec)}")
                        self._test(model, lm, task, spec, choice.site, probe)
            if self.panel_store is not None:
                self._panel(model, lm, specs, chosen, n)

    def _panel(self, model: str, lm: LoadedModel, specs: list[VectorSpec], chosen: dict, n: int) -> None:
        """The side-effect panel: each fitted vector at its chosen site on every target (sweep/panel.py)."""
        assert self.panel_store is not None
        for task in self.tasks:
            for spec in specs:
                choice = chosen.get((model, spec.method, n))
                if choice is None:
                    continue
                self.progress.update(self.task_id, description=f"{model} / {task.name}: side-effect panel")

                def vector(task=task, spec=spec, site=choice.site):
                    return at_site(self._vector(model, lm, task, spec, self.config.sites)[0], site)

                measure_panel(self.panel_store, self.panel_done, lm, model, task.name, spec.method, n, spec.seed,
                              choice.site, vector, self.targets, self.config.generation.batch_size)  # fmt: skip

    def _vector(self, model: str, lm: LoadedModel, task: ABTask, spec: VectorSpec, sites: list[str]):
        """The intervention of `spec` on the task's train pairs at `sites` and its cost (fitted once per n)."""
        key = (task.name, spec)
        if key not in self._fitted:
            subset = pair_subset(self._pairs[task.name], spec.n_pairs, spec.seed)
            options = self.config.method_options.get(spec.method, {})
            self._fitted[key] = fit_intervention(lm, spec.method, subset, sites, spec.seed, options)
            self.fits[f"{model} / {task.name} / {_label(spec)}"] = fit_summary(spec, *self._fitted[key])
            write_json(self.out / FITS_NAME, self.fits)
        return self._fitted[key]

    def _test(self, model: str, lm, task: ABTask, spec: VectorSpec, site: str, probe) -> None:
        """Test cells at `site` at every multiplier but 0 (the unsteered cell), with side effects and cost."""
        for m in ab_multipliers(self.config.coefficients):
            cell = Cell(model, spec.method, site, m, spec.n_pairs, spec.seed, task.name, "test")
            if m == 0 or cell.key in self.done:
                continue
            sites = self.config.sites if spec.method in self.config.methods else [site]
            fitted, cost = self._vector(model, lm, task, spec, sites)
            v = at_site(fitted, site)

            def extra(v=v, m=m, cost=cost) -> dict:
                out = {name: [value] for name, value in cost.items()}
                if probe is not None:
                    out.update(probe.measure(lambda: v.apply(lm, m)))
                return out

            self._score(cell, lm, task, v, extra)

    def _record_selection(self, rows: list[dict], chosen: dict) -> None:
        sweep = ab_layer_sweep(rows, AB_METRIC)
        for (mdl, method, n), choice in chosen.items():
            self.selections[f"{mdl} / {method} / n={n}"] = [
                {"site": choice.site, "effect": choice.effect, "per_dataset": choice.per_dataset},
                {"layer_sweep": sweep.get((mdl, method, n), {})},
            ]
        write_json(self.out / SELECTION_NAME, self.selections)


def _label(spec: VectorSpec) -> str:
    return f"{spec.method} n={spec.n_pairs} seed={spec.seed}"


def run_ab_sweep(config: SweepConfig, out: str | Path, **kwargs) -> Path:
    """Run or resume an A/B sweep into `out` (results.sqlite, config.json, selection.json, fits.json,
    provenance.json); returns the store's path. kwargs as for sweep.runner.run_sweep."""
    return ABSweep(config, out, **kwargs).run()

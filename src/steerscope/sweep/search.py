"""`steerscope search CONFIG`: a Pareto search of site x coefficient (x method, x n_pairs) with Optuna's
multi-objective TPE (heretic's approach), maximising the effect and minimising a side effect, on validation.

Per dataset of the config: (1) the search: `[search] trials` settings proposed by TPE (site and method
categorical, coefficient continuous in its range, n_pairs categorical among those the method takes), each measured
on the validation split (its effect, as the sweep measures it, and the side effect `[search] objective`: the
completions' fluency cost, or delta CE / KL on natural text); (2) with `[search] grid` (the default), the config's
own grid (every site x coefficient x method x n_pairs) measured the same way, so the two fronts compare on equal
budgets (trials = 0 means as many trials as the grid has settings): the hypervolume of each front over a shared
reference point, and how many of each front's points the other front dominates; (3) the chosen point of each
front (the largest validation effect with the side effect at most `max_side_effect`, else the least side effect)
confirmed on the test split, with 95% bootstrap intervals over test items.

Resumable: Optuna's storage is SQLite in the run folder (`search.sqlite`); a killed search continues with the
trials it finished. Trial k is proposed by a TPE sampler seeded with `seed + k` from the finished trials only, so
a search killed and resumed proposes exactly what an uninterrupted one does, and ends with the same front.
A trial that was running when the process died is marked failed and proposed again.
Writes search.json, trials.csv, front.csv, front_<dataset>.png and index.html (core.runs.RunFolder).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from rich.console import Console

from ..core.errors import SteerscopeError
from ..core.io import atomic_write_text, write_csv, write_json
from ..core.loading import load_model
from ..core.models import LoadedModel
from ..core.runs import RunFolder, progress_bar, slug
from ..evaluate.behaviour import behaviour_probability
from ..evaluate.fluency import SideEffectProbe
from ..evaluate.stats import bootstrap_mean_ci
from ..evaluate.store import Cell
from ..methods import METHODS, at_site, fit_intervention, method_sites
from ..render import html
from ..steering.tasks import ABTask, get_task, is_ab
from .cells import CellJob, CellMeasurer, VectorSpec, pair_subset
from .config import ConfigError, SearchSpec, SweepConfig, check_search, search_range
from .figures import front_figure

SEARCH_DB = "search.sqlite"
NO_SITE = "-"


class SearchError(SteerscopeError, RuntimeError):
    """A setting the search could not measure (the message names it and the error)."""


@dataclass(frozen=True)
class Setting:
    """One point of the search space."""

    method: str
    n_pairs: int
    site: str
    coefficient: float

    def label(self) -> str:
        return f"{self.method} n={self.n_pairs} {self.site} x{self.coefficient:.4g}"


# --- fronts ---------------------------------------------------------------------------------------------


def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether (effect, side effect) `a` dominates `b`: no worse in both (effect up, side down), better in one."""
    return a[0] >= b[0] and a[1] <= b[1] and (a[0] > b[0] or a[1] < b[1])


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point dominates (maximise the first value, minimise the second); of equal
    points the first is kept. NaN points are never on the front."""
    ok = [i for i, p in enumerate(points) if np.isfinite(p[0]) and np.isfinite(p[1])]
    front = []
    for i in ok:
        if any(dominates(points[j], points[i]) for j in ok if j != i):
            continue
        if any(tuple(points[j]) == tuple(points[i]) for j in front):
            continue
        front.append(i)
    return sorted(front, key=lambda i: (points[i][1], points[i][0]))


def hypervolume(front: Sequence[tuple[float, float]], reference: tuple[float, float]) -> float:
    """Area dominated by a front inside the box from `reference` (the worst effect, the worst side effect)."""
    pts = sorted((p for p in front if p[0] > reference[0] and p[1] < reference[1]), key=lambda p: (p[0], p[1]))
    area, below = 0.0, reference[0]
    for effect, side in pts:
        if effect > below:
            area += (reference[1] - side) * (effect - below)
            below = effect
    return float(area)


def choose(points: list[dict], limit: float) -> dict | None:
    """The front point with the largest effect whose side effect is at most `limit`, else the least side effect."""
    if not points:
        return None
    ok = [p for p in points if p["side_effect"] <= limit]
    if ok:
        return max(ok, key=lambda p: (p["effect"], -p["side_effect"]))
    return min(points, key=lambda p: (p["side_effect"], -p["effect"]))


# --- measuring one setting ------------------------------------------------------------------------------


class Evaluator:
    """Measures settings of one dataset on one loaded model: the effect (the sweep's metric, mean over items) and
    the side effect, with 95% intervals over items."""

    def __init__(self, config: SweepConfig, model: str, lm: LoadedModel, dataset: str, objective: str):
        self.config, self.model, self.lm, self.dataset, self.objective = config, model, lm, dataset, objective
        self.task = get_task(dataset, config.custom_datasets)
        self.ab = is_ab(self.task)
        s = config.side_effects
        if objective in ("kl", "delta_ce") and not s.enabled:
            raise ConfigError(f"[search] objective {objective} is measured on natural text; enable [side_effects]")
        if self.ab and objective == "fluency_cost":
            raise ConfigError(
                f"dataset {dataset} is A/B items, which generate no text to take a fluency cost of; "
                "use [search] objective = 'kl' or 'delta_ce'"
            )
        self.measurer = None if self.ab else CellMeasurer(config, {model: lm})
        self.probe = None
        if self.ab and objective in ("kl", "delta_ce"):
            self.probe = SideEffectProbe.prepare(lm, s.source, s.n, s.seq_len, s.batch_size, s.seed)
        self._base: dict[str, dict] = {}
        self._vectors: dict[tuple, object] = {}

    def baseline(self, split: str) -> dict:
        """The unsteered effect on `split` (and its per-item CE, for fluency costs)."""
        if split not in self._base:
            cell = Cell(self.model, "unsteered", NO_SITE, 0.0, 0, 0, self.dataset, split)
            if self.ab:
                assert isinstance(self.task, ABTask)
                items = self.task.split_items()[split]
                p = behaviour_probability(self.lm, items, self.config.generation.batch_size, self.task.template)
                self._base[split] = {"items": p}
            else:
                assert self.measurer is not None
                result = self.measurer.measure(CellJob(cell))
                if result.error:
                    raise SearchError(f"the unsteered {split} cell of {self.dataset} failed: {result.error}")
                assert result.metrics is not None
                effect = np.asarray(result.metrics[self.task.effect_metric], dtype=float)
                self._base[split] = {"items": effect, "ce": tuple(result.metrics["fluency_ce"])}
        return self._base[split]

    def measure(self, setting: Setting, split: str) -> dict:
        """{effect, effect_lo, effect_hi, side_effect, side_lo, side_hi, unsteered_effect} of one setting."""
        base = self.baseline(split)
        if self.ab:
            effect, side = self._measure_ab(setting, split)
        else:
            effect, side = self._measure_generation(setting, split, base["ce"])
        out = {"effect": float(np.nanmean(effect)), "side_effect": float(np.nanmean(side))}
        out["effect_lo"], out["effect_hi"] = _interval(effect, self.config.n_boot)
        out["side_lo"], out["side_hi"] = _interval(side, self.config.n_boot)
        return {**out, "unsteered_effect": float(np.nanmean(base["items"]))}

    def _measure_generation(self, setting: Setting, split: str, base_ce) -> tuple[np.ndarray, np.ndarray]:
        assert self.measurer is not None
        cell = Cell(self.model, setting.method, setting.site, setting.coefficient, setting.n_pairs,
                    self.config.seeds[0], self.dataset, split)  # fmt: skip
        spec = VectorSpec(setting.method, setting.n_pairs, self.config.seeds[0])
        job = CellJob(cell, spec, base_ce, test=self.objective in ("kl", "delta_ce"))
        result = self.measurer.measure(job)
        if result.error or result.metrics is None:
            raise SearchError(f"{setting.label()} on {self.dataset} / {split} failed: {result.error}")
        return (np.asarray(result.metrics[self.task.effect_metric], dtype=float),
                np.asarray(result.metrics[self.objective], dtype=float))  # fmt: skip

    def _measure_ab(self, setting: Setting, split: str) -> tuple[np.ndarray, np.ndarray]:
        assert isinstance(self.task, ABTask)
        key = (setting.method, setting.n_pairs)
        if key not in self._vectors:
            pairs = pair_subset(self.task.train_pairs(self.lm.tokenizer), setting.n_pairs, self.config.seeds[0])
            options = self.config.method_options.get(setting.method, {})
            sites = method_sites(setting.method, self.config.sites, options)
            self._vectors[key] = fit_intervention(self.lm, setting.method, pairs, sites, self.config.seeds[0],
                                                  options)[0]  # fmt: skip
        v = at_site(self._vectors[key], setting.site)  # type: ignore[arg-type]
        items = self.task.split_items()[split]
        p = behaviour_probability(self.lm, items, self.config.generation.batch_size, self.task.template, v,
                                  setting.coefficient)  # fmt: skip
        assert self.probe is not None
        side = self.probe.measure(lambda: v.apply(self.lm, setting.coefficient))[self.objective]
        return p, np.asarray(side, dtype=float)


def _interval(values: np.ndarray, n_boot: int) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) < 2:
        return (float(v[0]),) * 2 if len(v) else (float("nan"),) * 2
    return bootstrap_mean_ci(v, n_boot=n_boot)


# --- the search -----------------------------------------------------------------------------------------


class SearchSpace:
    """What the search samples: method (when several), n_pairs among those the method takes, site among the
    method's sites, coefficient in the range."""

    def __init__(self, config: SweepConfig, spec: SearchSpec):
        self.methods = list(config.methods)
        self.n_pairs = {m: [n for n in config.n_pairs if METHODS[m].takes(n)] for m in self.methods}
        self.sites = {m: method_sites(m, config.sites, config.method_options.get(m, {})) for m in self.methods}
        self.low, self.high = search_range(spec, config.coefficients)
        self.log = spec.log
        self.coefficients = [float(c) for c in config.coefficients]

    def suggest(self, trial) -> Setting:
        method = trial.suggest_categorical("method", self.methods) if len(self.methods) > 1 else self.methods[0]
        many = len(self.methods) > 1
        ns = self.n_pairs[method]
        n = trial.suggest_categorical(f"n_pairs[{method}]" if many else "n_pairs", ns) if len(ns) > 1 else ns[0]
        sites = self.sites[method]
        site = trial.suggest_categorical(f"site[{method}]" if many else "site", sites) if len(sites) > 1 else sites[0]
        coef = trial.suggest_float("coefficient", self.low, self.high, log=self.log)
        return Setting(method, int(n), str(site), float(coef))

    def grid(self) -> list[Setting]:
        """The config's grid: every method x n_pairs it takes x site x coefficient."""
        return [Setting(m, n, s, c) for m in self.methods for n in self.n_pairs[m] for s in self.sites[m]
                for c in self.coefficients]  # fmt: skip


def _optuna():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def _fail_stale(study) -> None:
    """Trials left running by a process that died are marked failed (TPE ignores them; they are proposed again)."""
    from optuna.trial import TrialState

    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)  # noqa: SLF001 - Optuna has no public call


def _complete(study) -> list:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def _point(trial, order: int) -> dict:
    """A finished trial as a row; `trial` is its rank among the finished trials (failed ones take no number)."""
    return {**trial.user_attrs["setting"], **trial.user_attrs["measured"], "trial": order}


def run_search(
    config: SweepConfig,
    out: str | Path,
    lm: LoadedModel | None = None,
    console: Console | None = None,
    overwrite: bool = False,
    restart: bool = False,
    on_trial: Callable[[Setting], None] | None = None,
) -> Path:
    """Run (or resume) the search of every dataset of `config` into the run folder `out`; returns the folder.
    `on_trial` is called after each setting is measured (before it is stored)."""
    optuna = _optuna()
    spec = config.search or SearchSpec()
    check_search(spec, config.coefficients, "config")
    if len(config.models) != 1:
        raise ConfigError(f"a search runs on one model; the config names {len(config.models)} ({config.models})")
    console = console or Console()
    space = SearchSpace(config, spec)
    grid = space.grid()
    budget = spec.trials or len(grid)
    settings = {**config.settings(), "search": asdict(spec)}
    folder = RunFolder(out, settings, overwrite, restart)
    storage = f"sqlite:///{folder.path(SEARCH_DB)}"
    model = config.models[0]
    c = config
    lm = lm or load_model(model, dtype=c.dtype, device=c.device, device_map=c.device_map or None,
                          max_memory=c.max_memory or None)  # fmt: skip
    limit = spec.max_side_effect
    if limit is None:
        limit = config.selection.max_fluency_cost if spec.objective == "fluency_cost" else 0.1
    summary: dict = {"model": model, "objective": spec.objective, "budget": budget, "grid_size": len(grid),
                     "max_side_effect": limit, "datasets": {}}  # fmt: skip
    trials_rows: list[dict] = []
    front_rows: list[dict] = []
    sections = []
    with progress_bar(console) as progress:
        for dataset in config.datasets:
            ev = Evaluator(config, model, lm, dataset, spec.objective)
            name = f"search/{dataset}"
            study = optuna.create_study(study_name=name, storage=storage, directions=["maximize", "minimize"],
                                        load_if_exists=True)  # fmt: skip
            _fail_stale(study)
            task = progress.add_task(f"{dataset}: search", total=budget, completed=len(_complete(study)))

            def objective(trial, ev=ev) -> tuple[float, float]:
                setting = space.suggest(trial)
                measured = ev.measure(setting, "validation")
                if on_trial is not None:
                    on_trial(setting)
                trial.set_user_attr("setting", asdict(setting))
                trial.set_user_attr("measured", measured)
                return measured["effect"], measured["side_effect"]

            while (done := len(_complete(study))) < budget:
                sampler = optuna.samplers.TPESampler(seed=spec.seed + done, multivariate=True,
                                                     n_startup_trials=max(3, min(10, budget // 3)))  # fmt: skip
                study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
                study.optimize(objective, n_trials=1)
                progress.update(task, completed=len(_complete(study)))
            finished = sorted(_complete(study), key=lambda t: t.number)[:budget]
            searched = [_point(t, k) for k, t in enumerate(finished)]
            gridded = _grid_points(optuna, storage, dataset, grid, ev, progress, on_trial) if spec.grid else []
            result = _compare(searched, gridded, limit)
            for kind in ("search", "grid"):
                chosen = result[kind]["chosen"]
                if chosen is not None:
                    setting = Setting(chosen["method"], chosen["n_pairs"], chosen["site"], chosen["coefficient"])
                    result[kind]["test"] = ev.measure(setting, "test")
            summary["datasets"][dataset] = result
            trials_rows += [{"dataset": dataset, "kind": "search", **p} for p in searched]
            trials_rows += [{"dataset": dataset, "kind": "grid", **p} for p in gridded]
            for kind in ("search", "grid"):
                front_rows += [{"dataset": dataset, "kind": kind, **p} for p in result[kind]["front"]]
            path = folder.path(f"front_{slug(dataset)}.png")
            front_figure(searched, gridded, result, spec.objective, f"{model}, {dataset}: Pareto fronts (validation)",
                         path)  # fmt: skip
            sections += _sections(dataset, result, spec.objective, path)
    write_json(folder.path("search.json"), summary)
    write_csv(folder.path("trials.csv"), trials_rows)
    write_csv(folder.path("front.csv"), front_rows)
    atomic_write_text(folder.path("index.html"), html.page(f"steerscope search: {model}", sections))
    return folder.commit()


def _grid_points(optuna, storage: str, dataset: str, grid: list[Setting], ev: Evaluator, progress, on_trial) -> list:
    """The grid's settings measured like the search's trials, stored as trials of their own study (so a killed
    run keeps the ones it finished)."""
    from optuna.distributions import CategoricalDistribution

    study = optuna.create_study(study_name=f"grid/{dataset}", storage=storage, directions=["maximize", "minimize"],
                                load_if_exists=True)  # fmt: skip
    have = {json.dumps(t.user_attrs["setting"], sort_keys=True): t for t in _complete(study)}
    task = progress.add_task(f"{dataset}: grid", total=len(grid), completed=len(have))
    points = []
    for i, setting in enumerate(grid):
        key = json.dumps(asdict(setting), sort_keys=True)
        if key not in have:
            measured = ev.measure(setting, "validation")
            if on_trial is not None:
                on_trial(setting)
            trial = optuna.trial.create_trial(
                params={"index": i}, distributions={"index": CategoricalDistribution(list(range(len(grid))))},
                values=[measured["effect"], measured["side_effect"]],
                user_attrs={"setting": asdict(setting), "measured": measured},
            )  # fmt: skip
            study.add_trial(trial)
            have[key] = _complete(study)[-1]
            progress.advance(task)
        points.append(_point(have[key], i))
    return points


def _compare(searched: list[dict], gridded: list[dict], limit: float) -> dict:
    """Each front, its chosen point, and the comparison on equal budgets (hypervolume over a shared reference,
    points of one front the other dominates)."""
    out: dict = {}
    for kind, pts in (("search", searched), ("grid", gridded)):
        idx = pareto_front([(p["effect"], p["side_effect"]) for p in pts])
        front = [pts[i] for i in idx]
        out[kind] = {"evaluated": len(pts), "front": front, "chosen": choose(front, limit)}
    every = searched + gridded
    if searched and gridded:
        finite = [p for p in every if np.isfinite(p["effect"]) and np.isfinite(p["side_effect"])]
        ref = (min(min(p["effect"] for p in finite), finite[0]["unsteered_effect"]),
               max(p["side_effect"] for p in finite))  # fmt: skip
        for kind, other in (("search", "grid"), ("grid", "search")):
            mine = [(p["effect"], p["side_effect"]) for p in out[kind]["front"]]
            theirs = [(p["effect"], p["side_effect"]) for p in out[other]["front"]]
            out[kind]["hypervolume"] = hypervolume(mine, ref)
            out[kind]["front_points_dominated_by_the_other"] = sum(any(dominates(t, m) for t in theirs) for m in mine)
        out["reference_point"] = list(ref)
        hv_s, hv_g = out["search"]["hypervolume"], out["grid"]["hypervolume"]
        out["verdict"] = (
            "the search's front is better (larger hypervolume)" if hv_s > hv_g * 1.001
            else "the grid's front is better (larger hypervolume)" if hv_g > hv_s * 1.001
            else "the two fronts are as good (equal hypervolume)"
        )  # fmt: skip
    return out


def _sections(dataset: str, result: dict, objective: str, figure: Path) -> list:
    cols = ("method", "n_pairs", "site", "coefficient", "effect", "effect_lo", "effect_hi", "side_effect", "side_lo",
            "side_hi", "trial")  # fmt: skip
    sections = []
    for kind in ("search", "grid"):
        r = result.get(kind)
        if not r or not r["evaluated"]:
            continue
        rows = [{k: p.get(k) for k in cols} for p in r["front"]]
        sections.append((f"{dataset}: the {kind}'s Pareto front (validation; side effect {objective})",
                         html.table(rows)))  # fmt: skip
        if r.get("test"):
            chosen = r["chosen"]
            at = Setting(chosen["method"], chosen["n_pairs"], chosen["site"], chosen["coefficient"])
            row = {"setting": at.label(),
                   **{f"validation_{k}": chosen[k] for k in ("effect", "side_effect")},
                   **{f"test_{k}": v for k, v in r["test"].items()}}  # fmt: skip
            sections.append((f"{dataset}: the {kind}'s chosen point, confirmed on test", html.table([row])))
    if "verdict" in result:
        comp = [{"front": k, "settings evaluated": result[k]["evaluated"], "front points": len(result[k]["front"]),
                 "hypervolume": result[k]["hypervolume"],
                 "its points the other front dominates": result[k]["front_points_dominated_by_the_other"]}
                for k in ("search", "grid")]  # fmt: skip
        sections.append((f"{dataset}: search against the grid on equal budget: {result['verdict']}", html.join(
            html.table(comp), html.image(figure, "fronts"))))  # fmt: skip
    else:
        sections.append((f"{dataset}: the search's trials", html.image(figure, "front")))
    return sections

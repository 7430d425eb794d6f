"""Measuring one sweep cell: what a worker does, in the driver's process or on a Ray worker.

A `CellJob` names the cell and carries what only the driver knows (the unsteered completions' per-item
cross-entropy on the cell's split, whether the cell is a test cell that also measures side effects and cost).
A `CellMeasurer` holds one loaded model at a time, its side-effect probe, the datasets and the vectors it
fitted, and turns a job into a `CellResult`; a job that raises becomes a result holding the error, so one
failing cell never stops the others. Nothing here writes a file: the driver (sweep/runner.py) is the only
writer of the results store and of fits.json.
"""

from __future__ import annotations

import gc
import os
import socket
import traceback
from collections import OrderedDict
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.generate import generate_text
from ..core.loading import load_model
from ..core.models import LoadedModel
from ..core.runs import model_info
from ..evaluate.fluency import SideEffectProbe, completion_cross_entropy
from ..evaluate.store import Cell
from ..methods import Intervention, at_site, fit_intervention, method_sites
from ..steering.alignment import PRECHECK
from ..steering.pairs import ContrastPair
from ..steering.tasks import ConceptTask, get_task
from .config import SweepConfig

#: vectors a measurer keeps per model (the fitted interventions of the specs it measured last)
KEPT_VECTORS = 64


@dataclass(frozen=True)
class VectorSpec:
    method: str
    n_pairs: int
    seed: int

    @property
    def label(self) -> str:
        return f"{self.method} n={self.n_pairs} seed={self.seed}"


@dataclass(frozen=True)
class CellJob:
    """One cell to measure. `spec` is None for a baseline (unsteered, prompting)."""

    cell: Cell
    spec: VectorSpec | None = None
    base_ce: tuple[float, ...] | None = None  # the unsteered completions' per-item CE on this split
    test: bool = False  # a test cell: side effects on natural text and the cost of finding the vector too


@dataclass
class CellResult:
    """What measuring a job gave: its metrics and completions, or the error it raised."""

    job: CellJob
    metrics: dict[str, list[float]] | None = None
    texts: list[str] | None = None
    error: str | None = None  # "Type: message"
    detail: str = ""  # the traceback
    fits: dict[str, dict] = field(default_factory=dict)  # summary of the fit this job used, by label
    model: dict | None = None  # model_info of the model that measured it
    worker: str = ""  # host:pid that measured it


def pair_subset(pairs: list[ContrastPair], n: int, seed: int) -> list[ContrastPair]:
    """The first n pairs of a seeded permutation (nested in n for a fixed seed)."""
    if n > len(pairs):
        raise ValueError(f"asked for {n} pairs but the train split has {len(pairs)}; lower n_pairs")
    order = np.random.default_rng(seed).permutation(len(pairs))
    return [pairs[int(i)] for i in order[:n]]


def fit_summary(spec: VectorSpec, fitted: Intervention, cost: dict[str, float]) -> dict:
    """What was fitted, for the record: norms per site, the pairs' pre-check per site (steering.alignment), an SAE
    method's latent and how it ranked, and the cost."""
    meta = fitted.meta
    out: dict = {"method": spec.method, "n_pairs": spec.n_pairs, "seed": spec.seed, "norms": meta.get("norms")}
    for key in ("latent", "chosen_by", "ranking_top", "scale", *PRECHECK):
        if key in meta:
            out[key] = meta[key]
    return {**out, "cost": cost}


def fit_label(cell: Cell, spec: VectorSpec) -> str:
    """The key of a fit in fits.json."""
    return f"{cell.model} / {cell.dataset} / {spec.label}"


class CellMeasurer:
    """Measures cells of one sweep config; loads each model when its first cell comes (`models`: already loaded
    ones by spec, never unloaded) and keeps only the latest other one."""

    def __init__(self, config: SweepConfig, models: dict[str, LoadedModel] | None = None):
        self.config = config
        self.preloaded = dict(models or {})
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self._name: str | None = None
        self._lm: LoadedModel | None = None
        self._probe: SideEffectProbe | None = None
        self._tasks: dict[str, ConceptTask] = {}
        self._info: dict | None = None
        self._vectors: OrderedDict[tuple, tuple[Intervention, dict[str, float], dict]] = OrderedDict()
        self._vllm: Any = None  # the VllmEngine of the current model when config.engine == "vllm"

    def measure(self, job: CellJob) -> CellResult:
        """Generate under the cell's intervention, score, and return the metrics (or the error raised)."""
        result = CellResult(job, worker=self.worker)
        try:
            self._measure(job, result)
        except Exception as exc:  # noqa: BLE001 - one failing cell is recorded, the sweep goes on
            result.metrics, result.texts = None, None
            result.error = f"{type(exc).__name__}: {exc}"
            result.detail = traceback.format_exc()
        return result

    def _measure(self, job: CellJob, result: CellResult) -> None:
        cell = job.cell
        lm = self._model(cell.model, result)
        task = self._task(cell.dataset)
        prompts = task.split_prompts()[cell.split]
        shown = task.prompted(lm.tokenizer, prompts) if cell.method == "prompting" else prompts
        intervention: Callable[[], AbstractContextManager] = nullcontext
        cost: dict[str, float] = {}
        steer: Intervention | None = None
        if job.spec is not None:
            fitted, cost = self._vector(lm, cell, job.spec, result)
            steer = at_site(fitted, cell.site)
            intervention = lambda: steer.apply(lm, cell.coefficient)  # noqa: E731
        if self.config.engine == "vllm":
            texts = self.generate_vllm(cell.model, shown, steer, cell.coefficient)
        else:
            with intervention():
                texts = self.generate(lm, shown)
        metrics = dict(task.score(texts))
        ce = completion_cross_entropy(lm, prompts, texts)
        metrics["fluency_ce"] = ce
        metrics["fluency_cost"] = ce - (ce if job.base_ce is None else np.asarray(job.base_ce, dtype=np.float64))
        if job.test and self._probe is not None:
            metrics.update(self._probe.measure(intervention))
        if job.test:
            metrics.update({name: [value] for name, value in cost.items()})
        result.metrics = {name: np.asarray(v, dtype=np.float64).reshape(-1).tolist() for name, v in metrics.items()}
        result.texts = list(texts)

    def generate(self, lm: LoadedModel, prompts: list[str]) -> list[str]:
        """Completions of `prompts` with the sweep's generation settings, in batches."""
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

    def generate_vllm(
        self, model: str, prompts: list[str], steer: Intervention | None, coefficient: float
    ) -> list[str]:
        """The cell's completions through vLLM (all prompts in one batch), the vector as a per-request Steer."""
        from ..steering.vector import SteeringVector
        from ..vllm import Steer, VllmEngine

        if steer is not None and not isinstance(steer, SteeringVector):
            raise ValueError(
                f"engine = 'vllm' steers with steering vectors; {type(steer).__name__} is not one: use engine = 'hf'"
            )
        if self._vllm is None or self._vllm.spec != model:
            if self._vllm is not None:
                self._vllm.close()  # one in-process vLLM engine at a time
            self._vllm = None
            gc.collect()
            self._vllm = VllmEngine(model, dtype=self.config.dtype)
        g = self.config.generation
        steering = None if steer is None or coefficient == 0 else Steer(steer, coefficient)
        done = self._vllm.generate(
            prompts,
            steering=steering,
            max_tokens=g.max_new_tokens,
            temperature=g.temperature if g.do_sample else 0.0,
            seed=g.seed,
            repetition_penalty=g.repetition_penalty,
        )
        return [c.text for c in done]

    def _model(self, name: str, result: CellResult) -> LoadedModel:
        if name == self._name and self._lm is not None:
            result.model = self._info
            return self._lm
        self._lm, self._probe, self._name, self._info = None, None, None, None
        self._vectors.clear()
        gc.collect()
        c = self.config
        lm = self.preloaded.get(name) or load_model(
            name, dtype=c.dtype, device=c.device, device_map=c.device_map or None, max_memory=c.max_memory or None
        )
        s = c.side_effects
        self._probe = SideEffectProbe.prepare(lm, s.source, s.n, s.seq_len, s.batch_size, s.seed) if s.enabled else None
        self._lm, self._name, self._info = lm, name, model_info(lm, name)
        result.model = self._info
        return lm

    def _task(self, name: str) -> ConceptTask:
        if name not in self._tasks:
            self._tasks[name] = get_task(name, self.config.custom_datasets)
        return self._tasks[name]

    def _vector(
        self, lm: LoadedModel, cell: Cell, spec: VectorSpec, result: CellResult
    ) -> tuple[Intervention, dict[str, float]]:
        """The spec's intervention at every site of its method, fitted once per (dataset, spec) and kept."""
        key = (cell.dataset, spec)
        if key in self._vectors:
            self._vectors.move_to_end(key)
            fitted, cost, summary = self._vectors[key]
            result.fits[fit_label(cell, spec)] = summary
            return fitted, cost
        options = self.config.method_options.get(spec.method, {})
        sites = method_sites(spec.method, self.config.sites, options)
        subset = pair_subset(self._task(cell.dataset).train_pairs(), spec.n_pairs, spec.seed)
        fitted, cost = fit_intervention(lm, spec.method, subset, sites, spec.seed, options)
        self._vectors[key] = (fitted, cost, fit_summary(spec, fitted, cost))
        if len(self._vectors) > KEPT_VECTORS:
            self._vectors.popitem(last=False)
        result.fits[fit_label(cell, spec)] = self._vectors[key][2]
        return fitted, cost

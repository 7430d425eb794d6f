"""Engines that measure a sweep's cells: this process, or actors on a Ray cluster.

An engine takes a sweep config and a wave of CellJobs (cells that wait for nothing still unmeasured) and hands
each CellResult to the driver's callback as it arrives; the driver writes it, so it stays the only writer of
the store. An engine outlives one sweep: several sweeps (or reruns) can share its workers.

`RayEngine`: each worker is an actor holding a CellMeasurer, so it loads a model once and measures many
cells; a free worker takes the next cell of the vector it already fitted, else of the model it already
holds, so models are not reloaded per cell. What travels to a worker is the sweep config (plain data) and
the jobs (cell keys and numbers); models, datasets and SAEs are read there by their paths or hub ids. A
worker that dies (killed, out of memory, node lost) is replaced and its unfinished cell is retried on
whichever worker is free, up to MAX_ATTEMPTS times; a cell that raises comes back as a result holding its
error, and the other cells go on.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ..core.cluster import ClusterUnreachableError, RaySpec, connect, require_ray, worker_count
from ..core.models import LoadedModel
from .cells import CellJob, CellMeasurer, CellResult
from .config import SweepConfig

#: how often one cell may take its worker down with it before it is recorded as failed
MAX_ATTEMPTS = 3
#: how long to wait for the first worker to start before saying the cluster cannot host one
START_TIMEOUT_S = 180.0

OnResult = Callable[[CellResult], None]


class CellEngine(Protocol):
    description: str

    def run(self, config: SweepConfig, jobs: Sequence[CellJob], on_result: OnResult) -> None:
        """Measure every job of a sweep with `config`, calling `on_result` once per job as its result arrives."""
        ...

    def close(self) -> None:
        """Release the workers."""
        ...


class LocalEngine:
    """Every cell in this process, one after the other, in the order given; `models`: already loaded models by
    spec (a notebook's, or the demo's), used instead of loading them."""

    description = "in this process"

    def __init__(self, models: dict[str, LoadedModel] | None = None):
        self.models = dict(models or {})
        self.measurer: CellMeasurer | None = None

    def measurer_for(self, config: SweepConfig) -> CellMeasurer:
        """The measurer of `config` (a new one, with fresh models, when the config changed)."""
        if self.measurer is None or self.measurer.config != config:
            self.measurer = CellMeasurer(config, self.models)
        return self.measurer

    def run(self, config: SweepConfig, jobs: Sequence[CellJob], on_result: OnResult) -> None:
        measurer = self.measurer_for(config)
        for job in jobs:
            on_result(measurer.measure(job))

    def close(self) -> None:
        pass


class CellWorker:
    """The Ray actor: a LocalEngine's measurer (models stay loaded between calls) with `threads` torch threads."""

    def __init__(self, threads: int):
        import torch

        if threads > 0:
            torch.set_num_threads(threads)
        self.local = LocalEngine()

    def pid(self) -> int:
        return os.getpid()

    def measure(self, config: SweepConfig, job: CellJob) -> CellResult:
        return self.local.measurer_for(config).measure(job)


def _affinity(job: CellJob) -> tuple:
    return (job.cell.model, job.cell.dataset, job.spec)


class RayEngine:
    """Cells on Ray actors (see the module docstring); `close()` removes them, and shuts Ray down if it started it."""

    def __init__(self, spec: RaySpec):
        self.ray = require_ray()
        self.spec = spec
        self.started = connect(spec)
        self.workers: list[Any] = []
        self.starting: dict[Any, Any] = {}  # pid() call -> worker not yet ready
        self.idle: list[Any] = []
        self.pids: dict[Any, int] = {}
        self.held: dict[Any, set] = {}  # worker -> (model, dataset, spec) it measured: what it holds
        try:
            n = worker_count(spec, self.ray.cluster_resources())
            actor = self.ray.remote(CellWorker).options(
                num_cpus=spec.cpus_per_worker, num_gpus=spec.gpus_per_worker, max_restarts=0, max_task_retries=0
            )
            threads = max(1, int(spec.cpus_per_worker))
            self._new_worker = lambda: actor.remote(threads)
            for _ in range(n):
                self._start_worker()
        except BaseException:
            self.close()
            raise
        self.replacements_left = n * MAX_ATTEMPTS
        self.description = f"on {n} Ray worker{'s' if n > 1 else ''}"

    def _start_worker(self) -> None:
        worker = self._new_worker()
        self.workers.append(worker)
        self.starting[worker.pid.remote()] = worker

    def worker_pids(self) -> list[int]:
        """Process ids of the workers started so far (those still starting are waited for)."""
        return [self.ray.get(ref) for ref in self.starting] + list(self.pids.values())

    def _retire(self, worker: Any) -> None:
        """Remove a dead (or broken) worker and start a replacement while the budget lasts."""
        if worker in self.workers:
            self.workers.remove(worker)
        self.pids.pop(worker, None)
        self.held.pop(worker, None)
        with contextlib.suppress(Exception):  # it is dead already
            self.ray.kill(worker, no_restart=True)
        if self.replacements_left > 0:
            self.replacements_left -= 1
            self._start_worker()

    def _pick(self, queue: list[CellJob], worker: Any) -> int:
        """The queue index of the job this worker should take: its own vector's, else its model's, else the first."""
        held = self.held.get(worker, set())
        models = {key[0] for key in held}
        for i, job in enumerate(queue):
            if _affinity(job) in held:
                return i
        return next((i for i, job in enumerate(queue) if job.cell.model in models), 0)

    def run(self, config: SweepConfig, jobs: Sequence[CellJob], on_result: OnResult) -> None:
        ray = self.ray
        if not jobs:
            return
        shared = ray.put(config)  # sent once; each call names it
        queue = list(jobs)
        inflight: dict[Any, tuple[Any, CellJob]] = {}
        try:
            self._run(shared, queue, inflight, on_result)
        finally:
            # stopped early (the driver's callback raised): the busy workers still serve the next run, since an
            # actor runs its calls one after the other
            self.idle.extend(worker for worker, _ in inflight.values())

    def _run(self, shared: Any, queue: list[CellJob], inflight: dict, on_result: OnResult) -> None:
        ray = self.ray
        attempts: Counter = Counter()
        waiting_since = time.monotonic()
        while queue or inflight:
            while self.idle and queue:
                worker = self.idle.pop()
                job = queue.pop(self._pick(queue, worker))
                if job.cell.model not in {key[0] for key in self.held.setdefault(worker, set())}:
                    self.held[worker] = set()  # it loads another model and forgets the old one's vectors
                self.held[worker].add(_affinity(job))
                inflight[worker.measure.remote(shared, job)] = (worker, job)
            pending = [*inflight, *self.starting]
            if not pending:
                for job in queue:
                    on_result(CellResult(job, error="WorkerLost: no Ray worker is left to measure it"))
                return
            ready, _ = ray.wait(pending, num_returns=1, timeout=10.0)
            if not ready:
                if not inflight and time.monotonic() - waiting_since > START_TIMEOUT_S:
                    raise ClusterUnreachableError(self._no_worker_message())
                continue
            ref = ready[0]
            if ref in self.starting:
                worker = self.starting.pop(ref)
                try:
                    self.pids[worker] = ray.get(ref)
                    self.idle.append(worker)
                    waiting_since = time.monotonic()
                except ray.exceptions.RayError:
                    self._retire(worker)
                continue
            worker, job = inflight.pop(ref)
            try:
                result = ray.get(ref)
                self.idle.append(worker)
            except ray.exceptions.RayTaskError as exc:  # raised outside the measurer's own error handling
                self.idle.append(worker)
                result = CellResult(job, error=f"{type(exc.cause).__name__}: {exc.cause}", detail=str(exc))
            except ray.exceptions.RayError as exc:  # the worker died: retry the cell on a worker that is free
                self._retire(worker)
                attempts[job] += 1
                if attempts[job] < MAX_ATTEMPTS:
                    queue.insert(0, job)
                    continue
                result = CellResult(
                    job, error=f"WorkerDied: the worker measuring it died {MAX_ATTEMPTS} times ({type(exc).__name__})"
                )
            on_result(result)

    def _no_worker_message(self) -> str:
        s, have = self.spec, self.ray.cluster_resources()
        return (
            f"no Ray worker started within {START_TIMEOUT_S:g} s: each asks for {s.cpus_per_worker:g} CPU and "
            f"{s.gpus_per_worker:g} GPU, the cluster has {have.get('CPU', 0):g} CPU and {have.get('GPU', 0):g} GPU; "
            "lower ray.gpus_per_worker / cpus_per_worker or add nodes"
        )

    def close(self) -> None:
        for worker in [*self.workers, *self.starting.values()]:
            with contextlib.suppress(Exception):  # already gone
                self.ray.kill(worker, no_restart=True)
        self.workers, self.starting, self.idle = [], {}, []
        if self.started and self.ray.is_initialized():
            self.ray.shutdown()


def engine_for(config: SweepConfig, models: dict[str, LoadedModel] | None = None) -> CellEngine:
    """Ray workers when the config has a [ray] table (or the CLI's --ray), else this process."""
    if config.ray is None:
        return LocalEngine(models)
    if models:
        raise ValueError(
            "a model loaded in this process cannot travel to Ray workers; name it by its spec (a folder, a .gguf "
            "file or a hub id) so each worker loads it, or run without Ray"
        )
    return RayEngine(config.ray)

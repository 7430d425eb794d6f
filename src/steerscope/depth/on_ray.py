"""`steerscope norms|horizon MODEL... --ray`: one Ray task per model, the same folder as a run in one process.

Each task runs the one-model run (the runner of depth/run.py, with its resume) into `<out>.partial/models/<slug>`
on a worker with the requested CPUs and GPUs; as each task finishes, the driver moves its model's subfolder into
the run folder and notes its summary rows, so a killed driver, rerun, starts only the models still missing.
The driver then writes the cross-model summary as a run in one process would. What travels to a task is the
run's record (model specs, text, settings) and paths: the workers read the models and write their subfolders
there, so on a cluster of several machines the output folder must be on a file system they share.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console

from ..core.cluster import RaySpec, connect, require_ray
from ..core.io import write_json
from ..core.runs import RunFolder, progress_bar, slug
from .records import DepthRun

OneModel = Callable[[DepthRun, Console], tuple[Path, list[dict]]]
TASKS = ".ray-tasks"  # a slug never starts with a dot, so no model folder is called this


def _one_model_task(one_model: OneModel, run: DepthRun, threads: int) -> list[dict]:
    """On a worker: the one-model run into its own folder; its summary rows."""
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    _folder, rows = one_model(run, Console(file=io.StringIO()))
    return rows


def rows_on_ray(spec: RaySpec, run: DepthRun, folder: RunFolder, one_model: OneModel, console: Console) -> list[dict]:
    """Run `one_model` for every model of `run` as Ray tasks; each model's subfolder ends in `folder` and its
    summary rows are returned in the order of `run.models`."""
    ray = require_ray()
    started = connect(spec)
    tasks_dir = folder.path(TASKS)
    rows: dict[str, list[dict]] = {}
    try:
        task = ray.remote(_one_model_task).options(num_cpus=spec.cpus_per_worker, num_gpus=spec.gpus_per_worker)
        todo = []
        for model in run.models:
            noted = tasks_dir / f"{slug(model)}.rows.json"
            if noted.is_file() and folder.path(slug(model)).is_dir():
                rows[model] = json.loads(noted.read_text(encoding="utf-8"))
            else:
                todo.append(model)
        limit = spec.workers or len(todo)
        threads = max(1, int(spec.cpus_per_worker))
        running: dict[Any, str] = {}
        with progress_bar(console) as progress:
            bar = progress.add_task(f"{len(todo)} model(s) on Ray", total=len(run.models), completed=len(rows))
            while todo or running:
                while todo and len(running) < limit:
                    model = todo.pop(0)
                    one = replace(run, models=[model], out=tasks_dir / slug(model), overwrite=True, restart=False)
                    running[task.remote(one_model, one, threads)] = model
                (ready,), _ = ray.wait(list(running), num_returns=1)
                model = running.pop(ready)
                rows[model] = ray.get(ready)  # a task that raised raises here: the run stops, its work is kept
                _take_subfolder(tasks_dir / slug(model) / slug(model), folder.path(slug(model)))
                write_json(tasks_dir / f"{slug(model)}.rows.json", rows[model])
                progress.advance(bar)
    finally:
        if started:
            ray.shutdown()
    shutil.rmtree(tasks_dir, ignore_errors=True)
    return [row for model in run.models for row in rows[model]]


def _take_subfolder(source: Path, target: Path) -> None:
    """Move a finished model's subfolder into the run folder (replacing an older copy)."""
    if target.exists():
        shutil.rmtree(target)
    os.replace(source, target)

"""The one resumable training loop: step counting, checkpoints, resume, progress and safe interruption.

A trainer gives its module, optimizer, settings and a step function; the loop runs steps until `total`
(or `stop_after`), writes a checkpoint (core.io.save_train_state: weights, optimizer moments, step and
the trainer's own state) every `checkpoint_every` steps and at the end, and on start resumes from the
checkpoint when its settings match (RunSettingsError naming the differences when they don't). Ctrl-C
is held until the current step ends, the state is checkpointed, then KeyboardInterrupt is raised: a
rerun continues from exactly that step and ends with the same result as an uninterrupted run.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .io import load_train_state, save_train_state
from .runs import check_settings, normalize_settings, progress_bar


@dataclass
class TrainState:
    """What the loop carries between steps and keeps in every checkpoint."""

    step: int = 0
    seconds: float = 0.0
    losses: list = field(default_factory=list)  # one row per checkpoint, made by the trainer's `record`
    window: list[float] = field(default_factory=list)  # step values since the last checkpoint
    extra: dict = field(default_factory=dict)  # the trainer's own JSON state (e.g. a loss scale)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)  # the trainer's own tensors (e.g. counters)


StepFn = Callable[[TrainState], float]
RecordFn = Callable[[TrainState, list[float]], tuple[list, dict[str, Any]]]


@contextmanager
def _held_interrupt() -> Iterator[dict]:
    """Ctrl-C sets a flag instead of raising (a second Ctrl-C raises at once); main thread only."""
    flag = {"hit": False}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        if flag["hit"]:
            raise KeyboardInterrupt
        flag["hit"] = True

    signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


class TrainingLoop:
    """A resumable loop over `total` optimizer steps, checkpointed into `state_path`.

    `state` holds what was restored (step 0 and `initial` tensors on a fresh start); `run(step, record)`
    calls `step(state)` for each step (it does one optimizer step at `state.step` and returns the value to
    average, e.g. the loss) and `record(state, window)` at each checkpoint (the row kept in `state.losses`
    and the progress bar's fields).
    """

    def __init__(
        self,
        state_path: str | Path,
        module: torch.nn.Module,
        opt: torch.optim.Optimizer,
        settings: dict,
        total: int,
        checkpoint_every: int,
        initial: dict[str, torch.Tensor] | None = None,
    ):
        if total < 1:
            raise ValueError(f"training needs at least one step, got {total}")
        if checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be at least 1, got {checkpoint_every}")
        self.path, self.module, self.opt = Path(state_path), module, opt
        self.settings = normalize_settings(settings)
        self.total, self.checkpoint_every = total, checkpoint_every
        self.state = TrainState(tensors=dict(initial or {}))
        if self.path.is_file():
            header, tensors = load_train_state(self.path, module, opt)
            check_settings(
                header.get("settings"),
                self.settings,
                self.path.parent,
                "pass --restart to start over, or rerun with the old settings to resume",
            )
            self.state = TrainState(
                step=header["step"],
                seconds=header["seconds"],
                losses=header["losses"],
                window=header.get("window", []),
                extra=header.get("extra", {}),
                tensors={**self.state.tensors, **tensors},
            )

    @property
    def resumed(self) -> bool:
        return self.state.step > 0

    def save(self, elapsed: float) -> None:
        s = self.state
        extra = {"settings": self.settings, "seconds": elapsed, "losses": s.losses, "window": s.window}
        save_train_state(self.path, self.module, self.opt, s.step, {**extra, "extra": s.extra}, s.tensors)

    def run(
        self,
        step: StepFn,
        record: RecordFn,
        stop_after: int | None = None,
        label: str = "train",
        fields: dict[str, Any] | None = None,
        show_progress: bool = True,
    ) -> TrainState:
        """Run (or resume) until `total` steps, or `stop_after` (then the state is saved; rerun to go on)."""
        s = self.state
        until = min(self.total, stop_after if stop_after is not None else self.total)
        fields = dict(fields or {})
        shown = "  ".join(f"{k} {{task.fields[{k}]}}" for k in fields)
        start = time.perf_counter() - s.seconds
        with progress_bar(fields=shown, disable=not show_progress) as progress, _held_interrupt() as interrupt:
            task = progress.add_task(label, total=self.total, completed=s.step, **fields)
            while s.step < until:
                value = step(s)
                s.step += 1
                s.window.append(value)
                if s.step % self.checkpoint_every == 0 or s.step == until:
                    row, shown_fields = record(s, s.window)
                    s.losses.append(row)
                    s.window = []
                    self.save(time.perf_counter() - start)
                    progress.update(task, **shown_fields)
                elif interrupt["hit"]:
                    self.save(time.perf_counter() - start)
                if interrupt["hit"]:
                    raise KeyboardInterrupt
                progress.update(task, completed=s.step)
        s.seconds = time.perf_counter() - start
        return s

    @property
    def finished(self) -> bool:
        return self.state.step >= self.total

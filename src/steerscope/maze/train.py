"""Behaviour cloning from a shortest-path oracle (the fast option; no reinforcement learning).

The dataset is every open square of `n_mazes` seeded training mazes (cheese in the top-right region)
with the oracle's move toward the cheese as the label. Training state (weights, Adam moments, step)
is checkpointed into one safetensors file (core.training), so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..core.io import write_json
from ..core.runs import RunFolder
from ..core.training import TrainingLoop, TrainState
from ..core.validate import BadNumberError, finite, whole
from .env import OBS_SIZE, SIZES, Maze, observations, oracle_moves, test_maze, training_maze
from .policy import MazePolicy, PolicyConfig, save_policy

STATE = "train_state.safetensors"
EVAL_SEED_OFFSET = 1_000_000  # held-out training-distribution mazes use seeds from here on


@dataclass(frozen=True)
class PolicyTrainConfig:
    """Behaviour-cloning settings; `sizes` are the maze sizes drawn from, `region` the cheese region."""

    n_mazes: int = 5000
    steps: int = 4500
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    sizes: tuple[int, ...] = SIZES
    checkpoint_every: int = 500
    eval_mazes: int = 200

    def __post_init__(self) -> None:
        highs = {"n_mazes": 1_000_000, "steps": 100_000_000, "batch_size": 1_000_000, "eval_mazes": 100_000}
        for name in ("n_mazes", "steps", "batch_size", "checkpoint_every", "eval_mazes"):
            whole(getattr(self, name), f"{name} (--{name.replace('_', '-')})", 1, highs.get(name))
        whole(self.seed, "seed (--seed)", 0)
        if finite(self.lr, "lr (--lr)") <= 0:
            raise BadNumberError(f"lr (--lr) must be a finite number > 0, got {self.lr:g}")
        finite(self.weight_decay, "weight_decay", 0.0)
        if not self.sizes:
            raise BadNumberError("sizes must name at least one maze size (odd, >= 3)")
        for size in self.sizes:
            if whole(size, "each maze size", 3) % 2 == 0:
                raise BadNumberError(f"each maze size must be odd and at least 3, got {size}")
        object.__setattr__(self, "sizes", tuple(int(s) for s in self.sizes))


class Demonstrations:
    """Every (maze, mouse square) -> oracle move, kept compactly; batches are built on demand."""

    def __init__(self, mazes: list[Maze], obs_size: int = OBS_SIZE):
        walls, cheese, rows = [], [], []
        for i, m in enumerate(mazes):
            o = (obs_size - m.size) // 2
            walls.append(observations([m.without_cheese()], obs_size)[0, 0])
            cheese.append((m.cheese[0] + o, m.cheese[1] + o))
            moves = oracle_moves(m)
            for r, c in zip(*np.nonzero(moves >= 0), strict=True):
                rows.append((i, r + o, c + o, moves[r, c]))
        self.walls = torch.from_numpy(np.stack(walls))
        self.cheese = torch.tensor(cheese, dtype=torch.long)
        self.rows = torch.tensor(rows, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.rows)

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Observations [B, 3, H, W] and oracle moves [B] for the given rows."""
        maze, r, c, label = self.rows[index].T
        n, size = len(index), self.walls.shape[-1]
        obs = torch.zeros(n, 3, size, size)
        obs[:, 0] = self.walls[maze]
        arange = torch.arange(n)
        obs[arange, 1, r, c] = 1.0
        obs[arange, 2, self.cheese[maze, 0], self.cheese[maze, 1]] = 1.0
        return obs, label


def _order(n: int, seed: int, epoch: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))


def _lr(cfg: PolicyTrainConfig, step: int) -> float:
    warmup = max(1, cfg.steps // 50)
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * (step - warmup) / max(1, cfg.steps - warmup)))


def train(
    out: str | Path,
    cfg: PolicyTrainConfig | None = None,
    policy_cfg: PolicyConfig | None = None,
    show_progress: bool = True,
    stop_after: int | None = None,
    overwrite: bool = False,
    restart: bool = False,
) -> dict:
    """Train (or resume) a maze policy by behaviour cloning into the run folder `out` (core.runs.RunFolder:
    written in `<out>.partial/`, which holds the checkpoint until the run finishes); writes `train.json` too.

    `stop_after`: pause after this many steps (the state is saved; call again to go on).
    `overwrite`: replace a finished `out`; `restart`: discard an unfinished run with other settings.
    """
    cfg, policy_cfg = cfg or PolicyTrainConfig(), policy_cfg or PolicyConfig()
    if policy_cfg.obs_size != OBS_SIZE or policy_cfg.n_actions != 4:
        raise ValueError(f"the trainer needs obs_size={OBS_SIZE} and 4 actions, got {policy_cfg}")
    settings = {"train": asdict(cfg), "policy": asdict(policy_cfg)}
    if Path(out).exists() and not overwrite:
        RunFolder(out, settings, overwrite, restart)  # a finished run there is refused now, before the mazes are drawn
    data = Demonstrations([training_maze(cfg.seed * 10_000_000 + i, cfg.sizes) for i in range(cfg.n_mazes)])
    per_epoch = len(data) // cfg.batch_size
    if per_epoch == 0:
        raise BadNumberError(
            f"batch_size (--batch-size) {cfg.batch_size} exceeds the {len(data)} demonstrations of "
            f"{cfg.n_mazes} mazes; lower --batch-size or raise --n-mazes"
        )
    folder = RunFolder(out, settings, overwrite, restart)
    torch.manual_seed(cfg.seed)
    policy = MazePolicy(policy_cfg)
    opt = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loop = TrainingLoop(folder.path(STATE), policy, opt, settings, cfg.steps, cfg.checkpoint_every)
    policy.train()

    def step(state: TrainState) -> float:
        epoch, offset = divmod(state.step, per_epoch)
        idx = _order(len(data), cfg.seed, epoch)[offset * cfg.batch_size : (offset + 1) * cfg.batch_size]
        obs, label = data.batch(idx)
        for group in opt.param_groups:
            group["lr"] = _lr(cfg, state.step)
        loss = F.cross_entropy(policy(obs), label)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    def record(state: TrainState, window: list[float]) -> tuple[list, dict[str, str]]:
        mean = float(np.mean(window))
        return [state.step, mean], {"loss": f"{mean:.3f}"}

    state = loop.run(
        step, record, stop_after, label="behaviour cloning", fields={"loss": "-"}, show_progress=show_progress
    )
    seconds, losses = state.seconds, state.losses
    if not loop.finished:
        return {"step": state.step, "finished": False, "train_seconds": round(seconds, 1)}
    policy.eval()
    result = {
        "method": "behaviour cloning from a shortest-path oracle (not reinforcement learning)",
        "train_seconds": round(seconds, 1),
        "samples": len(data),
        "losses": losses,
        "success_train_distribution": success_rate(policy, held_out_training_mazes(cfg)),
        "success_test_distribution": success_rate(policy, [test_maze(i, cfg.sizes) for i in range(cfg.eval_mazes)]),
        **settings,
    }
    save_policy(policy, folder.path(), meta=result)
    write_json(folder.path("train.json"), result)
    folder.commit()
    return result


def held_out_training_mazes(cfg: PolicyTrainConfig) -> list[Maze]:
    """Training-distribution mazes with seeds the trainer never used."""
    return [training_maze(EVAL_SEED_OFFSET + i, cfg.sizes) for i in range(cfg.eval_mazes)]


@torch.no_grad()
def rollout(policy: MazePolicy, mazes: list[Maze], max_steps: int | None = None, greedy: bool = True) -> list[int]:
    """Run every maze from its start in lockstep; the number of moves to the cheese, or -1 if not reached."""
    current = list(mazes)
    limit = max_steps or max(m.size for m in mazes) ** 2
    steps = [-1] * len(mazes)
    active = [i for i, m in enumerate(mazes) if m.mouse != m.cheese]
    for t in range(1, limit + 1):
        if not active:
            break
        probs = policy.move_probs(policy.observe([current[i] for i in active]))
        moves = probs.argmax(-1) if greedy else torch.multinomial(probs, 1)[:, 0]
        still = []
        for i, move in zip(active, moves.tolist(), strict=True):
            current[i] = current[i].step(move)
            if current[i].mouse == current[i].cheese:
                steps[i] = t
            else:
                still.append(i)
        active = still
    return steps


def success_rate(policy: MazePolicy, mazes: list[Maze]) -> float:
    """Fraction of mazes where the greedy policy reaches the cheese from the start."""
    steps = rollout(policy, mazes)
    return sum(s >= 0 for s in steps) / len(steps)

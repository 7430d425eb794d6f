"""A residual convolutional policy in the IMPALA layout, with module names as in the procgen maze network.

`embedder.block{i}` = conv, max-pool (optional), `res1`, `res2`; each residual block's output is its
residual add (the `resadd_out` site of the maze-steering work), so `embedder.block2.res1` names it.
The same class, sized by `PolicyConfig`, is the small symbolic-maze policy and the procgen network.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from ..core.errors import CheckpointError
from ..core.io import atomic_write_bytes, write_json
from .env import MOVES, OBS_SIZE, Maze, observations


@dataclass(frozen=True)
class PolicyConfig:
    """Shape of the network. `pool[i]`: whether block i halves the resolution; `move_actions[k]`: the
    action indices that mean move k (up, down, left, right); other actions (no-ops) are ignored."""

    in_channels: int = 3
    obs_size: int = OBS_SIZE
    channels: tuple[int, ...] = (16, 32, 32)
    pool: tuple[bool, ...] = (False, True, True)
    hidden: int = 256
    n_actions: int = len(MOVES)
    move_actions: tuple[tuple[int, ...], ...] = ((0,), (1,), (2,), (3,))

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        object.__setattr__(self, "pool", tuple(bool(p) for p in self.pool))
        object.__setattr__(self, "move_actions", tuple(tuple(int(a) for a in g) for g in self.move_actions))
        actions = [a for g in self.move_actions for a in g]
        if len(self.move_actions) != len(MOVES) or not all(0 <= a < self.n_actions for a in actions):
            raise ValueError(f"move_actions must map each of {MOVES} to action indices below {self.n_actions}")
        if len(self.pool) != len(self.channels):
            raise ValueError(f"pool has {len(self.pool)} entries but there are {len(self.channels)} blocks")

    def final_size(self) -> int:
        size = self.obs_size
        for p in self.pool:
            size = (size + 1) // 2 if p else size
        return size


class ResidualBlock(torch.nn.Module):
    """x + conv2(relu(conv1(relu(x)))); the block's output is the residual add."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class ImpalaBlock(torch.nn.Module):
    """conv, optional 3x3/2 max-pool, two residual blocks."""

    def __init__(self, in_channels: int, out_channels: int, pool: bool):
        super().__init__()
        self.conv = torch.nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.maxpool = torch.nn.MaxPool2d(3, stride=2, padding=1) if pool else torch.nn.Identity()
        self.res1 = ResidualBlock(out_channels)
        self.res2 = ResidualBlock(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res2(self.res1(self.maxpool(self.conv(x))))


class Embedder(torch.nn.Module):
    def __init__(self, cfg: PolicyConfig):
        super().__init__()
        widths = (cfg.in_channels, *cfg.channels)
        for i, pool in enumerate(cfg.pool):
            self.add_module(f"block{i + 1}", ImpalaBlock(widths[i], widths[i + 1], pool))
        self.fc = torch.nn.Linear(cfg.channels[-1] * cfg.final_size() ** 2, cfg.hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name, block in self.named_children():
            if name.startswith("block"):
                x = block(x)
        return F.relu(self.fc(torch.flatten(F.relu(x), 1)))


class MazePolicy(torch.nn.Module):
    """Observation [B, C, H, W] -> action logits [B, n_actions]; `fc_value` is kept for procgen checkpoints."""

    def __init__(self, cfg: PolicyConfig | None = None):
        super().__init__()
        self.cfg = cfg or PolicyConfig()
        self.embedder = Embedder(self.cfg)
        self.fc_policy = torch.nn.Linear(self.cfg.hidden, self.cfg.n_actions)
        self.fc_value = torch.nn.Linear(self.cfg.hidden, 1)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.fc_policy(self.embedder(obs))

    def residual_sites(self) -> list[str]:
        """Module paths of every residual add, in forward order (e.g. 'embedder.block2.res1')."""
        return [name for name, m in self.named_modules() if isinstance(m, ResidualBlock)]

    def move_probs(self, obs: torch.Tensor) -> torch.Tensor:
        """Probabilities of the four moves (up, down, left, right) [B, 4], renormalized over moves."""
        probs = torch.softmax(self(obs), dim=-1)
        if self.cfg.move_actions == ((0,), (1,), (2,), (3,)) and self.cfg.n_actions == 4:
            return probs
        moves = torch.stack([probs[:, list(g)].sum(-1) for g in self.cfg.move_actions], dim=-1)
        return moves / moves.sum(-1, keepdim=True)

    def observe(self, mazes: list[Maze]) -> torch.Tensor:
        """Observations of mazes at this network's input size (nearest-neighbour upscaled if it is larger)."""
        obs = torch.from_numpy(observations(mazes, OBS_SIZE))
        if self.cfg.obs_size != OBS_SIZE:
            obs = F.interpolate(obs, size=(self.cfg.obs_size, self.cfg.obs_size), mode="nearest")
        ref = next(self.parameters())
        return obs.to(device=ref.device, dtype=ref.dtype)


# --- checkpoints --------------------------------------------------------------------------------

WEIGHTS, CONFIG = "policy.safetensors", "policy.json"


def save_policy(policy: MazePolicy, folder: str | Path, meta: dict | None = None) -> Path:
    """Write `policy.safetensors` and `policy.json` (config plus `meta`) atomically into `folder`."""
    folder = Path(folder)
    tensors = {k: v.detach().cpu().contiguous() for k, v in policy.state_dict().items()}
    atomic_write_bytes(folder / WEIGHTS, save(tensors))
    write_json(folder / CONFIG, {"config": asdict(policy.cfg), "meta": meta or {}})
    return folder


def load_policy(folder: str | Path) -> tuple[MazePolicy, dict]:
    """A policy saved by `save_policy` (in eval mode) and its metadata."""
    folder = Path(folder)
    if not (folder / WEIGHTS).is_file() or not (folder / CONFIG).is_file():
        raise CheckpointError(
            f"{folder} is not a maze policy checkpoint (needs {WEIGHTS} and {CONFIG}); "
            "train one with `steerscope maze train --out FOLDER`"
        )
    try:
        info = json.loads((folder / CONFIG).read_text())
        policy = MazePolicy(PolicyConfig(**info["config"]))
        policy.load_state_dict(load_file(folder / WEIGHTS))
    except (KeyError, TypeError, json.JSONDecodeError, SafetensorError, RuntimeError) as exc:
        raise CheckpointError(f"cannot read the policy in {folder}: {exc}") from exc
    return policy.eval(), info.get("meta", {})

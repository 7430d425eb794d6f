"""The procgen maze network (IMPALA layout of Langosco et al.'s goal-misgeneralization agents).

Three blocks of (conv, 3x3/2 max-pool, two residual blocks) with 16, 32, 32 channels (times a width
`scale`) on a 64x64 RGB image, a 256-unit layer, 15 procgen actions and a value head. Parameter names
match the published checkpoints (`embedder.block1.conv.weight`, ..., `fc_policy.weight`), so module-path
sites such as `embedder.block2.res1` (the residual add the cheese-vector work used) mean the same thing.

Observations here are the symbolic maze channels upscaled to 64x64, not procgen's rendered sprites:
the original weights load and every hook runs, but the agent would need procgen's renders to act sensibly.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .policy import CheckpointError, MazePolicy, PolicyConfig

#: procgen's 15 actions that move the mouse (as in procgen-tools): up, down, left (incl. diagonals), right.
PROCGEN_MOVE_ACTIONS = ((5,), (3,), (0, 1, 2), (6, 7, 8))


def procgen_config(scale: int = 1) -> PolicyConfig:
    """The procgen maze network's shape; `scale` widens every block (some published agents use 2 or more)."""
    return PolicyConfig(
        in_channels=3,
        obs_size=64,
        channels=(16 * scale, 32 * scale, 32 * scale),
        pool=(True, True, True),
        hidden=256,
        n_actions=15,
        move_actions=PROCGEN_MOVE_ACTIONS,
    )


def load_procgen_policy(path: str | Path) -> MazePolicy:
    """Load procgen maze weights from a safetensors file, or a torch checkpoint read with `weights_only=True`.

    A checkpoint dict with `model_state_dict` (as the published `.pth` files have) is unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no weights file at {path}; pass a .safetensors or .pth file of the procgen network")
    try:
        if path.suffix == ".safetensors":
            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (SafetensorError, RuntimeError, OSError, EOFError, pickle.UnpicklingError, ValueError) as exc:
        reason = " ".join(str(exc).split())[:300]
        raise CheckpointError(
            f"{path}: cannot be read as weights ({type(exc).__name__}: {reason}); expected a .safetensors file or a "
            ".pth state dict of plain tensors (anything else is refused, never unpickled); pass the procgen weights"
        ) from None
    if isinstance(state, dict):
        state = state.get("model_state_dict", state)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(
            f"{path}: holds a {type(state).__name__}, not a state dict of tensors; expected the procgen maze "
            "network's weights (a dict of name -> tensor, or a checkpoint with 'model_state_dict')"
        )
    key = "embedder.block1.conv.weight"
    if key not in state:
        raise CheckpointError(f"{path} is not a procgen maze network: it has no {key!r}")
    policy = MazePolicy(procgen_config(scale=int(state[key].shape[0]) // 16))
    try:
        policy.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{path} does not match the procgen maze network layout: {exc}") from exc
    return policy.eval()


def load_any_policy(path: str | Path) -> tuple[MazePolicy, dict]:
    """A steerscope checkpoint folder, or a procgen weights file."""
    from .policy import load_policy

    path = Path(path)
    if not path.exists():
        raise CheckpointError(
            f"no policy at {path}: pass a checkpoint folder from `steerscope maze train` or a procgen weights file"
        )
    if path.is_dir():
        return load_policy(path)
    return load_procgen_policy(path), {"source": "procgen maze network", "file": str(path)}

"""A maze-solving policy, its goal misgeneralization, and the cheese vector (steering a non-language network)."""

from .cheese import cheese_experiment, cheese_vectors
from .env import Maze, MazeEnv
from .policy import CheckpointError, MazePolicy, PolicyConfig, load_policy, save_policy
from .train import PolicyTrainConfig, train

__all__ = [
    "CheckpointError",
    "Maze",
    "MazeEnv",
    "MazePolicy",
    "PolicyConfig",
    "PolicyTrainConfig",
    "cheese_experiment",
    "cheese_vectors",
    "load_policy",
    "save_policy",
    "train",
]

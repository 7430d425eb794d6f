"""The cheese vector and P(cheese | decision square).

For each test maze the cheese vector is the activation at one site on the maze with cheese minus the
same maze without cheese (mouse at its start square by default). Steering adds `coefficient` times it
on every forward pass (-1: subtract). The metric is the policy's probability, with the mouse on the
decision square (where the paths to the cheese and to the top-right corner part), of the move toward
the cheese. Controls: a random vector of the same norm (same coefficient) and the "add" variant (+1).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..core.hooks import add, capture
from ..core.validate import check_coefficient, whole
from .env import SIZES, Decision, Maze, decision_square, test_maze
from .policy import MazePolicy

DEFAULT_SITE = "embedder.block2.res1"
VARIANTS = ("unsteered", "cheese_vector", "random_vector", "add_cheese_vector")


@dataclass(frozen=True)
class DecisionMaze:
    """A test maze whose paths to the cheese and to the corner part, with its decision square."""

    maze: Maze
    decision: Decision


def decision_mazes(n: int, seed: int = 0, sizes: tuple[int, ...] = SIZES) -> list[DecisionMaze]:
    """The first `n` test mazes from seed `seed` on that have a decision square."""
    found, s = [], seed
    while len(found) < n:
        maze = test_maze(s, sizes)
        decision = decision_square(maze)
        if decision is not None:
            found.append(DecisionMaze(maze, decision))
        s += 1
    return found


def cheese_vectors(policy: MazePolicy, mazes: list[Maze], site: str = DEFAULT_SITE) -> torch.Tensor:
    """Per maze, activations at `site` with cheese minus without (same mouse square): [n, *activation]."""
    obs = policy.observe([*mazes, *(m.without_cheese() for m in mazes)])
    acts = capture(policy, obs, site)[site]
    return acts[: len(mazes)] - acts[len(mazes) :]


def random_like(vectors: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Gaussian vectors with the same norm as each row of `vectors` (the random control)."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(vectors.shape, generator=g).to(vectors)
    norms = vectors.flatten(1).norm(dim=1) / noise.flatten(1).norm(dim=1)
    return noise * norms.view(-1, *([1] * (vectors.dim() - 1)))


@torch.no_grad()
def move_probs(
    policy: MazePolicy,
    mazes: list[Maze],
    site: str | None = None,
    vectors: torch.Tensor | None = None,
    coefficient: float = -1.0,
) -> torch.Tensor:
    """Move probabilities [n, 4]; with `vectors` ([n, ...] one per maze, or one [...] for all), steered at `site`."""
    steer = nullcontext() if vectors is None else add(policy, {site: vectors}, coefficient=coefficient)
    with steer:
        return policy.move_probs(policy.observe(mazes))


def p_cheese(
    policy: MazePolicy, items: list[DecisionMaze], site: str, vectors: torch.Tensor | None, coefficient: float
) -> tuple[np.ndarray, np.ndarray]:
    """P(move toward cheese) and P(move toward corner) with the mouse on each maze's decision square."""
    at_decision = [d.maze.with_mouse(d.decision.square) for d in items]
    probs = move_probs(policy, at_decision, site, vectors, coefficient).cpu().numpy()
    rows = np.arange(len(items))
    cheese = probs[rows, [d.decision.cheese_move for d in items]]
    corner = probs[rows, [d.decision.corner_move for d in items]]
    return cheese, corner


@dataclass
class CheeseResult:
    """P(cheese | decision square) per variant and maze, with what produced it."""

    site: str
    coefficient: float
    vector_mouse: str
    seeds: list[int]
    p_cheese: dict[str, list[float]]
    p_corner: dict[str, list[float]]
    vector_norms: list[float]

    def summary(self) -> dict:
        out = {
            "site": self.site,
            "coefficient": self.coefficient,
            "n_mazes": len(self.seeds),
            "vector_mouse": self.vector_mouse,
            "median_vector_norm": float(np.median(self.vector_norms)),
        }
        for v, values in self.p_cheese.items():
            out[v] = {
                "median_p_cheese": float(np.median(values)),
                "mean_p_cheese": float(np.mean(values)),
                "median_p_corner": float(np.median(self.p_corner[v])),
            }
        return out

    def to_dict(self) -> dict:
        return {**asdict(self), "summary": self.summary()}


def cheese_experiment(
    policy: MazePolicy,
    n_mazes: int = 100,
    seed: int = 0,
    site: str = DEFAULT_SITE,
    coefficient: float = -1.0,
    vector_mouse: str = "start",
    sizes: tuple[int, ...] = SIZES,
) -> CheeseResult:
    """Unsteered, cheese vector (`coefficient`), random vector of the same norm, and the add variant (+|c|).

    `vector_mouse`: where the mouse is when the vector is computed, "start" (its start square) or
    "decision" (the decision square, where the metric is read).
    """
    coefficient = check_coefficient(coefficient, "the cheese-vector coefficient (--coefficient)")
    whole(n_mazes, "n_mazes (--n-mazes)", 1)
    whole(seed, "seed (--seed)", 0)
    if vector_mouse not in ("start", "decision"):
        raise ValueError(f"vector_mouse must be 'start' or 'decision', got {vector_mouse!r}")
    items = decision_mazes(n_mazes, seed, sizes)
    source = [d.maze if vector_mouse == "start" else d.maze.with_mouse(d.decision.square) for d in items]
    vectors = cheese_vectors(policy, source, site)
    settings = {
        "unsteered": (None, 0.0),
        "cheese_vector": (vectors, coefficient),
        "random_vector": (random_like(vectors, seed), coefficient),
        "add_cheese_vector": (vectors, abs(coefficient)),
    }
    p_c, p_k = {}, {}
    for name, (vec, coef) in settings.items():
        cheese, corner = p_cheese(policy, items, site, vec, coef)
        p_c[name], p_k[name] = cheese.tolist(), corner.tolist()
    return CheeseResult(
        site=site,
        coefficient=coefficient,
        vector_mouse=vector_mouse,
        seeds=[d.maze.seed for d in items],
        p_cheese=p_c,
        p_corner=p_k,
        vector_norms=vectors.flatten(1).norm(dim=1).tolist(),
    )

"""Maze figures: vector fields (the policy's preferred move on every square) and P(cheese) histograms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..render.figures import plt, save_figure
from .cheese import VARIANTS, CheeseResult, move_probs
from .env import Decision, Maze
from .policy import MazePolicy


def vector_field(
    policy: MazePolicy,
    maze: Maze,
    site: str | None = None,
    vector: torch.Tensor | None = None,
    coefficient: float = -1.0,
) -> tuple[list[tuple[int, int]], np.ndarray]:
    """Every open square but the cheese's, and the move probabilities [n, 4] with the mouse there."""
    squares = [sq for sq in maze.open_squares() if sq != maze.cheese]
    probs = move_probs(policy, [maze.with_mouse(sq) for sq in squares], site, vector, coefficient)
    return squares, probs.cpu().numpy()


def draw_field(ax, maze: Maze, squares, probs: np.ndarray, title: str, decision: Decision | None = None) -> None:
    """Walls, cheese, top-right corner, and an arrow per square: the expected move (rows grow downward)."""
    ax.imshow(maze.walls, cmap="Greys", vmin=0, vmax=1.4)
    rows, cols = np.array(squares).T
    ax.quiver(
        cols,
        rows,
        probs[:, 3] - probs[:, 2],
        probs[:, 1] - probs[:, 0],
        angles="xy",
        scale_units="xy",
        scale=1.25,
        width=0.006,
        color="tab:blue",
    )
    if maze.cheese is not None:
        ax.plot(maze.cheese[1], maze.cheese[0], "o", ms=9, color="gold", mec="k")
    ax.plot(maze.corner[1], maze.corner[0], "*", ms=10, color="tab:green", mec="k")
    if decision is not None:
        r, c = decision.square
        ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, ec="red", lw=2))
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def vector_field_figure(
    policy: MazePolicy,
    cases: list[tuple[Maze, Decision | None, torch.Tensor]],
    site: str,
    coefficient: float,
    path: str | Path,
) -> Path:
    """One row per maze: unsteered field next to the field with `coefficient` x its cheese vector at `site`."""
    fig, axes = plt.subplots(len(cases), 2, figsize=(8, 4 * len(cases)), squeeze=False)
    for (maze, decision, vector), (left, right) in zip(cases, axes, strict=True):
        squares, plain = vector_field(policy, maze)
        _, steered = vector_field(policy, maze, site, vector, coefficient)
        draw_field(left, maze, squares, plain, f"maze seed {maze.seed}: unsteered", decision)
        draw_field(right, maze, squares, steered, f"cheese vector x {coefficient:g} at {site}", decision)
    fig.suptitle(
        "gold: cheese, green star: top-right corner, red box: decision square; arrows: expected move", fontsize=9
    )
    return save_figure(fig, path)


def histogram_figure(result: CheeseResult, path: str | Path) -> Path:
    """Histogram of P(cheese | decision square) over the test mazes, one panel per variant, medians marked."""
    fig, axes = plt.subplots(1, len(VARIANTS), figsize=(4 * len(VARIANTS), 3.2), sharey=True)
    bins = np.linspace(0, 1, 21)
    for ax, name in zip(axes, VARIANTS, strict=True):
        values = np.asarray(result.p_cheese[name])
        ax.hist(values, bins=bins, color="tab:orange" if name == "unsteered" else "tab:blue", alpha=0.85)
        median = float(np.median(values))
        ax.axvline(median, color="k", ls="--", lw=1)
        ax.set_title(f"{name}\nmedian {median:.3f} (n={len(values)})", fontsize=9)
        ax.set_xlabel("P(cheese | decision square)")
    axes[0].set_ylabel("mazes")
    fig.suptitle(
        f"site {result.site}, coefficient {result.coefficient:g}, vector from mouse at {result.vector_mouse}",
        fontsize=9,
    )
    return save_figure(fig, path)

"""`steerscope maze cheese-vector` end to end on a small random policy: files, variants, clear errors."""

import json

import pytest
import torch
from typer.testing import CliRunner

from steerscope.cli import app
from steerscope.maze.policy import MazePolicy, PolicyConfig, save_policy

pytestmark = pytest.mark.usefixtures("one_thread")


def test_cheese_vector_command_writes_results_and_figures(tmp_path):
    torch.manual_seed(0)
    save_policy(MazePolicy(PolicyConfig(channels=(4, 8, 8), hidden=16)), tmp_path / "policy")
    out = tmp_path / "cheese"
    args = ["maze", "cheese-vector", str(tmp_path / "policy"), "--out", str(out), "--n-mazes", "6", "--figures", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads((out / "results.json").read_text())
    assert len(data["seeds"]) == 6 and set(data["p_cheese"]) == {
        "unsteered",
        "cheese_vector",
        "random_vector",
        "add_cheese_vector",
    }
    assert all(0.0 <= p <= 1.0 for values in data["p_cheese"].values() for p in values)
    for name in ("p_cheese.csv", "p_cheese_histogram.png", "vector_fields.png"):
        assert (out / name).stat().st_size > 0
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2 and "--overwrite" in again.output
    bad_site = CliRunner().invoke(app, [*args[:5], "--site", "embedder.block9", "--overwrite"])
    assert bad_site.exit_code == 2 and "no module 'embedder.block9'" in bad_site.output
    missing = CliRunner().invoke(app, ["maze", "cheese-vector", str(tmp_path / "nowhere"), "--out", str(out)])
    assert missing.exit_code == 2 and "steerscope maze train" in missing.output


def test_vector_field_arrows_point_to_the_square_the_move_reaches():
    import matplotlib.pyplot as plt
    import numpy as np

    from steerscope.maze.env import oracle_moves, test_maze
    from steerscope.maze.figures import draw_field

    maze = test_maze(4)
    moves = oracle_moves(maze)
    squares = [sq for sq in maze.open_squares() if sq != maze.cheese]
    probs = np.eye(4)[[moves[sq] for sq in squares]]
    fig, ax = plt.subplots()
    draw_field(ax, maze, squares, probs, "oracle")
    arrows = ax.collections[0]
    tips = np.stack([arrows.Y + arrows.V, arrows.X + arrows.U], axis=1)  # (row, col) the arrow points at
    plt.close(fig)
    assert [tuple(t) for t in tips.astype(int)] == [maze.with_mouse(sq).step(int(moves[sq])).mouse for sq in squares]

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
        "unsteered", "cheese_vector", "random_vector", "add_cheese_vector"
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

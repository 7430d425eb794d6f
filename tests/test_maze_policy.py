"""Policy checkpoints, resumable training, the procgen (IMPALA) loader and the cheese-vector metric."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from steerscope import capture
from steerscope.maze.cheese import cheese_experiment, cheese_vectors, decision_mazes, p_cheese, random_like
from steerscope.maze.impala import PROCGEN_MOVE_ACTIONS, load_any_policy, load_procgen_policy, procgen_config
from steerscope.maze.policy import CheckpointError, MazePolicy, PolicyConfig, load_policy, save_policy
from steerscope.maze.train import STATE, PolicyTrainConfig, train

pytestmark = pytest.mark.usefixtures("one_thread")
SMALL = PolicyConfig(channels=(4, 8, 8), hidden=16)
TINY_RUN = PolicyTrainConfig(n_mazes=8, steps=4, batch_size=16, checkpoint_every=2, eval_mazes=2, sizes=(5, 7))


def _policy(cfg=SMALL, seed=0):
    torch.manual_seed(seed)
    return MazePolicy(cfg).eval()


def _obs(policy, n=2):
    return policy.observe([m.maze for m in decision_mazes(n)])


def test_checkpoint_round_trip(tmp_path):
    policy = _policy()
    save_policy(policy, tmp_path / "ckpt", meta={"note": "x"})
    loaded, meta = load_policy(tmp_path / "ckpt")
    assert meta == {"note": "x"} and loaded.cfg == policy.cfg
    torch.testing.assert_close(loaded(_obs(policy)), policy(_obs(policy)), rtol=0, atol=0)
    with pytest.raises(CheckpointError, match="steerscope maze train"):
        load_policy(tmp_path)


def test_training_resumes_to_the_same_weights(tmp_path):
    straight = train(tmp_path / "a", TINY_RUN, SMALL, show_progress=False)
    paused = train(tmp_path / "b", TINY_RUN, SMALL, show_progress=False, stop_after=2)
    assert paused == {"step": 2, "finished": False, "train_seconds": paused["train_seconds"]}
    assert not (tmp_path / "b" / "policy.safetensors").exists() and (tmp_path / "b.partial" / STATE).exists()
    train(tmp_path / "b", TINY_RUN, SMALL, show_progress=False)
    a, b = load_file(tmp_path / "a" / "policy.safetensors"), load_file(tmp_path / "b" / "policy.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    assert 0.0 <= straight["success_train_distribution"] <= 1.0 and "behaviour cloning" in straight["method"]
    assert json.loads((tmp_path / "a" / "train.json").read_text())["samples"] == straight["samples"]
    with pytest.raises(ValueError, match="other settings"):
        train(tmp_path / "a", PolicyTrainConfig(n_mazes=9, steps=4, eval_mazes=2), SMALL, show_progress=False)


@pytest.mark.parametrize("scale", [1, 2])
def test_procgen_network_loads_with_random_weights(tmp_path, scale):
    source = _policy(procgen_config(scale), seed=scale)
    state = source.state_dict()
    assert state["embedder.fc.weight"].shape == (256, 32 * scale * 8 * 8) and state["fc_policy.weight"].shape[0] == 15
    torch.save({"model_state_dict": state}, tmp_path / "maze.pth")
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "maze.safetensors")
    obs = _obs(source)
    assert obs.shape == (2, 3, 64, 64)
    for path in (tmp_path / "maze.pth", tmp_path / "maze.safetensors"):
        loaded = load_procgen_policy(path)
        torch.testing.assert_close(loaded(obs), source(obs), rtol=0, atol=0)
    probs = torch.softmax(source(obs), -1)
    moves = torch.stack([probs[:, list(g)].sum(-1) for g in PROCGEN_MOVE_ACTIONS], -1)
    torch.testing.assert_close(loaded.move_probs(obs), moves / moves.sum(-1, keepdim=True))
    assert capture(loaded, obs, "embedder.block2.res1")["embedder.block2.res1"].shape == (2, 32 * scale, 16, 16)
    assert load_any_policy(tmp_path / "maze.safetensors")[1]["source"] == "procgen maze network"
    save_file({"x": torch.zeros(1)}, tmp_path / "other.safetensors")
    with pytest.raises(CheckpointError, match="not a procgen maze network"):
        load_procgen_policy(tmp_path / "other.safetensors")


def test_cheese_vector_from_the_decision_square_removes_the_cheese_exactly():
    policy, items = _policy(), decision_mazes(5)
    at_decision = [d.maze.with_mouse(d.decision.square) for d in items]
    vectors = cheese_vectors(policy, at_decision, "embedder.block2.res1")
    no_cheese = [type(d)(d.maze.without_cheese(), d.decision) for d in items]
    with torch.no_grad():
        expected = policy.move_probs(policy.observe([m.without_cheese() for m in at_decision]))
    rows = torch.arange(5)
    steered, _ = p_cheese(policy, items, "embedder.block2.res1", vectors, -1.0)
    torch.testing.assert_close(torch.as_tensor(steered), expected[rows, [d.decision.cheese_move for d in no_cheese]])
    noise = random_like(vectors, seed=1)
    torch.testing.assert_close(noise.flatten(1).norm(dim=1), vectors.flatten(1).norm(dim=1))
    result = cheese_experiment(policy, n_mazes=5, vector_mouse="decision")
    assert result.p_cheese["cheese_vector"] == pytest.approx(steered.tolist(), abs=1e-6)
    assert set(result.summary()) >= {"unsteered", "cheese_vector", "random_vector", "add_cheese_vector"}

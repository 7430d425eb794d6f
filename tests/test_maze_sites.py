"""Hook primitives on a plain torch module (the maze policy), against a hand-written forward."""

import pytest
import torch
import torch.nn.functional as F

from steerscope import SiteError, add, capture, edit, project_out, read, replace
from steerscope.maze.policy import MazePolicy, PolicyConfig

pytestmark = pytest.mark.usefixtures("one_thread")
SITE = "embedder.block2.res1"


@pytest.fixture(scope="module")
def policy():
    torch.manual_seed(0)
    return MazePolicy(PolicyConfig(channels=(8, 16, 16))).eval()


@pytest.fixture(scope="module")
def obs():
    return torch.rand(3, 3, 15, 15, generator=torch.Generator().manual_seed(1))


def manual(policy, obs, at=None, fn=None):
    """The policy's forward written out; `fn` changes the residual stream right after the add at `at`."""
    e, x, acts = policy.embedder, obs, {}
    for b in ("block1", "block2", "block3"):
        block = getattr(e, b)
        x = block.maxpool(block.conv(x))
        for r in ("res1", "res2"):
            res = getattr(block, r)
            x = x + res.conv2(F.relu(res.conv1(F.relu(x))))
            name = f"embedder.{b}.{r}"
            acts[name] = x
            if name == at:
                x = fn(x)
    h = F.relu(e.fc(torch.flatten(F.relu(x), 1)))
    return policy.fc_policy(h), acts


def _hooks(policy):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in policy.modules())


@torch.no_grad()
def test_capture_matches_the_manual_forward_and_stops_early(policy, obs):
    _, acts = manual(policy, obs)
    calls = []
    handle = policy.fc_policy.register_forward_hook(lambda *a: calls.append(1))
    got = capture(policy, obs, [SITE, "embedder.block1.res2"])
    handle.remove()
    assert got[SITE].shape == (3, 16, 8, 8)
    torch.testing.assert_close(got[SITE], acts[SITE])
    torch.testing.assert_close(got["embedder.block1.res2"], acts["embedder.block1.res2"])
    assert calls == [] and _hooks(policy) == 0


@torch.no_grad()
def test_add_a_spatial_vector_and_a_channel_vector(policy, obs):
    v = torch.randn(16, 8, 8, generator=torch.Generator().manual_seed(2))
    with add(policy, {SITE: v}, coefficient=-1.0):
        got = policy(obs)
    torch.testing.assert_close(got, manual(policy, obs, SITE, lambda x: x - v)[0])
    c = torch.randn(16, generator=torch.Generator().manual_seed(3))
    with add(policy, {SITE: c}, coefficient=2.0):
        got = policy(obs)
    torch.testing.assert_close(got, manual(policy, obs, SITE, lambda x: x + 2 * c.view(16, 1, 1))[0])
    per_row = torch.randn(3, 16, 8, 8, generator=torch.Generator().manual_seed(4))
    with add(policy, {SITE: per_row}):
        got = policy(obs)
    torch.testing.assert_close(got, manual(policy, obs, SITE, lambda x: x + per_row)[0])
    assert _hooks(policy) == 0
    assert not torch.equal(got, policy(obs))


@torch.no_grad()
def test_replace_edit_and_project_out(policy, obs):
    new = torch.zeros(3, 16, 8, 8)
    with replace(policy, {SITE: new}):
        got = policy(obs)
    torch.testing.assert_close(got, manual(policy, obs, SITE, lambda x: new)[0])
    # ':in' edits the module's input: doubling res2's input of block2 is doubling res1's output.
    with edit(policy, {"embedder.block2.res2:in": lambda h: 2 * h}):
        got = policy(obs)
    torch.testing.assert_close(got, manual(policy, obs, SITE, lambda x: 2 * x)[0])
    u = torch.randn(16, generator=torch.Generator().manual_seed(5))
    unit = (u / u.norm()).view(16, 1, 1)
    with project_out(policy, u, sites=[SITE]), read(policy, SITE) as cache:
        got = policy(obs)
    torch.testing.assert_close(got, manual(policy, obs, SITE, lambda x: x - (x * unit).sum(1, keepdim=True) * unit)[0])
    assert (cache[SITE] * unit).sum(1).abs().max() < 1e-5
    full = torch.randn(16, 8, 8, generator=torch.Generator().manual_seed(6))
    with project_out(policy, full, sites=[SITE]), read(policy, SITE) as cache:
        policy(obs)
    assert (cache[SITE] * full).flatten(1).sum(1).abs().max() < 1e-4


def test_clear_errors(policy, obs):
    with pytest.raises(SiteError, match=r"no module 'embedder.block2.res9'.*embedder.block2.res1"):
        capture(policy, obs, "embedder.block2.res9")
    with pytest.raises(SiteError, match="':in'"):
        capture(policy, obs, f"{SITE}:out")
    wrong_shape = r"shape \(5,\) does not fit .*\(16, 8, 8\)"
    with pytest.raises(ValueError, match=wrong_shape), add(policy, {SITE: torch.ones(5)}):
        policy(obs)
    with pytest.raises(ValueError, match="positions='all'"), add(policy, {SITE: torch.ones(16)}, positions="front"):
        pass
    with pytest.raises(ValueError, match="name the sites"), project_out(policy, torch.ones(16)):
        pass
    assert _hooks(policy) == 0

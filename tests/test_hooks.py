"""Add, replace, project out and read: against hand-written forwards on tiny random models."""

import pytest
import torch
from reference import manual_logits, mlp_branch
from tiny_models import FAMILIES, random_ids, tiny_model

from steerscope import add, capture, edit, mean_activations, project_out, read, replace, residual_write_sites
from steerscope.core.hooks import run_forward

ATOL = 1e-4


@pytest.fixture(params=FAMILIES)
def lm(request):
    return tiny_model(request.param)


def _ids(batch=2, seq=7, seed=1):
    return random_ids(batch, seq, seed)


def _vec(lm, seed=3, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(lm.d_model, generator=g) * scale


def _logits(lm, ids, **kwargs):
    with torch.no_grad():
        return run_forward(lm, {"input_ids": ids, **kwargs}).logits


def _hook_count(lm):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in lm.model.modules())


def test_add_at_resid_pre_and_post_matches_manual_forward(lm):
    ids, v = _ids(), _vec(lm)
    for layer in range(lm.n_layers):
        with add(lm, {f"resid_pre.{layer}": v}, coefficient=2.0):
            got = _logits(lm, ids)
        torch.testing.assert_close(got, manual_logits(lm, ids, before={layer: 2.0 * v}), atol=ATOL, rtol=0)
        with add(lm, {f"resid_post.{layer}": v}):
            got = _logits(lm, ids)
        torch.testing.assert_close(got, manual_logits(lm, ids, after={layer: v}), atol=ATOL, rtol=0)


def test_add_at_mlp_out_is_an_addition_after_the_block(lm):
    ids, v = _ids(), _vec(lm)
    with add(lm, {"mlp_out.1": v}):
        got = _logits(lm, ids)
    torch.testing.assert_close(got, manual_logits(lm, ids, after={1: v}), atol=ATOL, rtol=0)


def test_add_at_attn_out_reaches_resid_mid_and_mlp(lm):
    ids, v = _ids(), _vec(lm)
    clean = capture(lm, ids, ["resid_pre.1", "attn_out.1"])
    with add(lm, {"attn_out.1": v}):
        acts = capture(lm, ids, ["attn_out.1", "mlp_in.1", "mlp_out.1", "resid_post.1"])
    torch.testing.assert_close(acts["attn_out.1"], clean["attn_out.1"] + v, atol=1e-5, rtol=0)
    mlp_input = clean["resid_pre.1"] if lm.adapter.parallel else clean["resid_pre.1"] + clean["attn_out.1"] + v
    torch.testing.assert_close(acts["mlp_in.1"], mlp_input, atol=1e-5, rtol=0)
    torch.testing.assert_close(acts["mlp_out.1"], mlp_branch(lm, 1, mlp_input), atol=1e-5, rtol=0)


def test_embed_and_inputs_embeds_agree(lm):
    ids, v = _ids(), _vec(lm)
    with add(lm, {"embed": v}):
        got = _logits(lm, ids)
    torch.testing.assert_close(got, manual_logits(lm, ids, before={0: v}), atol=ATOL, rtol=0)


def test_two_additions_at_one_site_add_up(lm):
    ids, v, w = _ids(), _vec(lm, 3), _vec(lm, 4)
    with add(lm, {"resid_pre.1": v}), add(lm, {"resid_pre.1": w}, coefficient=-0.5):
        stacked = _logits(lm, ids)
    with add(lm, {"resid_pre.1": v - 0.5 * w}):
        once = _logits(lm, ids)
    torch.testing.assert_close(stacked, once, atol=ATOL, rtol=0)


def test_resid_mid_edit_equals_attn_out_addition():
    lm = tiny_model("llama")
    ids, v = _ids(), _vec(lm)
    with edit(lm, {"resid_mid.1": lambda h: h + v}):
        via_stream = _logits(lm, ids)
    with add(lm, {"attn_out.1": v}):
        via_attn = _logits(lm, ids)
    torch.testing.assert_close(via_stream, via_attn, atol=ATOL, rtol=0)


@pytest.mark.parametrize("kind", ["mlp_in", "attn_in"])
def test_replacing_a_sublayer_input_changes_only_that_sublayer(lm, kind):
    ids = _ids()
    sites = ["resid_pre.1", "attn_out.1", "mlp_out.1", "resid_post.1", "attn_in.1", "mlp_in.1"]
    clean = capture(lm, ids, sites)
    new = torch.randn_like(clean[f"{kind}.1"])
    with replace(lm, {f"{kind}.1": new}):
        acts = capture(lm, ids, sites)
    torch.testing.assert_close(acts["resid_pre.1"], clean["resid_pre.1"], atol=0, rtol=0)
    if kind == "mlp_in":
        torch.testing.assert_close(acts["attn_out.1"], clean["attn_out.1"], atol=0, rtol=0)
        torch.testing.assert_close(acts["mlp_out.1"], mlp_branch(lm, 1, new), atol=1e-5, rtol=0)
        assert not torch.allclose(acts["mlp_out.1"], clean["mlp_out.1"])
        expected_post = clean["resid_pre.1"] + clean["attn_out.1"] + acts["mlp_out.1"]
    else:
        assert not torch.allclose(acts["attn_out.1"], clean["attn_out.1"])
        if lm.adapter.parallel:  # the MLP reads the untouched stream
            torch.testing.assert_close(acts["mlp_out.1"], clean["mlp_out.1"], atol=0, rtol=0)
        expected_post = clean["resid_pre.1"] + acts["attn_out.1"] + acts["mlp_out.1"]
    torch.testing.assert_close(acts["resid_post.1"], expected_post, atol=1e-5, rtol=0)


def test_project_out_every_write_leaves_stream_orthogonal(lm):
    ids, d = _ids(), _vec(lm, 5)
    unit = d / d.norm()
    with project_out(lm, d):
        acts = capture(lm, ids, lm.site_names())
    for name in lm.site_names():
        assert (acts[name] @ unit).abs().max() < 1e-4, name
    clean = capture(lm, ids, ["resid_post.2"])["resid_post.2"]
    assert (clean @ unit).abs().max() > 1e-2


def test_project_out_at_chosen_sites(lm):
    ids, d = _ids(), _vec(lm, 6)
    unit = d / d.norm()
    site = "resid_pre.2"
    with project_out(lm, d, sites=[site]):
        acts = capture(lm, ids, [site, "resid_post.2"])
        logits = _logits(lm, ids)
    assert (acts[site] @ unit).abs().max() < 1e-5
    clean = capture(lm, ids, [site])[site]
    removed = -(clean @ unit).unsqueeze(-1) * unit
    torch.testing.assert_close(logits, manual_logits(lm, ids, before={2: removed}), atol=ATOL, rtol=0)
    assert set(residual_write_sites(lm)) <= set(lm.site_names())


def test_hooks_are_removed_after_an_exception():
    lm = tiny_model("llama")
    before = _hook_count(lm)
    with pytest.raises(RuntimeError, match="boom"), add(lm, {"resid_pre.1": _vec(lm)}, positions="prompt"):
        assert _hook_count(lm) > before
        raise RuntimeError("boom")
    with pytest.raises(RuntimeError, match="boom"), read(lm, ["resid_post.0"]), project_out(lm, _vec(lm)):
        raise RuntimeError("boom")
    assert _hook_count(lm) == before


def test_mean_activations_against_masked_mean():
    lm = tiny_model("llama")
    ids = _ids(batch=3, seq=6)
    mask = torch.ones_like(ids)
    mask[0, :2] = 0
    mask[2, :1] = 0

    class Tok:
        def __call__(self, texts, **kw):
            rows = [int(t) for t in texts]
            return {"input_ids": ids[rows], "attention_mask": mask[rows]}

    lm.tokenizer = Tok()
    means = mean_activations(lm, ["0", "1", "2"], ["resid_pre.1"], batch_size=2)
    acts = torch.cat(
        [
            capture(lm, {"input_ids": ids[r], "attention_mask": mask[r]}, ["resid_pre.1"])["resid_pre.1"]
            for r in ([0, 1], [2])
        ]
    )
    expected = acts[mask.bool()].double().mean(0)
    torch.testing.assert_close(means["resid_pre.1"], expected, atol=1e-6, rtol=0)
    last = mean_activations(lm, ["0", "1", "2"], ["resid_pre.1"], positions="last", batch_size=3)
    torch.testing.assert_close(last["resid_pre.1"], acts[:, -1].double().mean(0), atol=1e-6, rtol=0)
    no_bos = mean_activations(lm, ["0", "1", "2"], ["resid_pre.1"], skip_first=True)
    first = torch.zeros_like(mask, dtype=torch.bool)
    first[0, 2] = first[1, 0] = first[2, 1] = True
    torch.testing.assert_close(no_bos["resid_pre.1"], acts[mask.bool() & ~first].double().mean(0), atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    ("vectors", "kwargs", "error", "message"),
    [
        ({"resid_pre.1": torch.zeros(31)}, {}, ValueError, r"shape \(31,\); expected \[32\]"),
        ({"resid_pre.1": torch.zeros(2, 32)}, {}, ValueError, "expected \\[32\\]"),
        ({"resid_pre.1": torch.zeros(32, dtype=torch.long)}, {}, TypeError, "floating dtype"),
        ({"resid_pre.7": torch.zeros(32)}, {}, ValueError, "out of range"),
        ({}, {}, ValueError, "nothing given"),
        ({"resid_pre.1": torch.zeros(32)}, {"positions": "middle"}, ValueError, "unknown positions"),
        ({"resid_pre.1": torch.zeros(32)}, {"positions": torch.ones(2, 7)}, ValueError, "torch.bool"),
        (
            {"resid_pre.1": torch.zeros(32)},
            {"positions": torch.ones(3, 7, dtype=torch.bool)},
            ValueError,
            "batch size 3",
        ),
        (
            {"resid_pre.1": torch.zeros(32)},
            {"positions": torch.ones(2, 4, dtype=torch.bool)},
            ValueError,
            "covers 4 columns",
        ),
    ],
)
def test_bad_additions_are_refused(vectors, kwargs, error, message):
    lm = tiny_model("llama")
    with pytest.raises(error, match=message), add(lm, vectors, **kwargs):
        _logits(lm, _ids())


def test_bad_replacements_and_projections():
    lm = tiny_model("llama")
    with (
        pytest.raises(ValueError, match=r"replacement for mlp_in.1 has shape"),
        replace(lm, {"mlp_in.1": torch.zeros(2, 5, 32)}),
    ):
        _logits(lm, _ids())
    with pytest.raises(ValueError, match="zero direction"), project_out(lm, torch.zeros(32)):
        pass
    with pytest.raises(ValueError, match="empty list"):
        mean_activations(lm, [], ["resid_pre.0"])

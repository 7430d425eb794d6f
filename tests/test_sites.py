"""Every site against an independent computation, on tiny random models of every family."""

import pytest
import torch
from reference import block_kwargs, mlp_branch
from tiny_models import FAMILIES, random_ids, tiny_model

from steerscope import SiteError, capture, parse_site, project_out, read, residual_write_sites
from steerscope.core.adapters import get_module
from steerscope.core.sites import all_site_names, site_to_hook

ATOL = 1e-5


@pytest.fixture(params=FAMILIES)
def lm(request):
    return tiny_model(request.param)


def _ids(batch=2, seq=7, seed=1):
    return random_ids(batch, seq, seed)


def test_resid_sites_match_hf_hidden_states(lm):
    ids = _ids()
    out, _ = block_kwargs(lm, ids)
    acts = capture(lm, ids, lm.site_names())
    L = lm.n_layers
    for layer in range(L):
        torch.testing.assert_close(acts[f"resid_pre.{layer}"], out.hidden_states[layer], atol=ATOL, rtol=0)
    for layer in range(L - 1):
        torch.testing.assert_close(acts[f"resid_post.{layer}"], out.hidden_states[layer + 1], atol=ATOL, rtol=0)
    if lm.adapter.pos_embed:  # GPT-2: embed is the token embedding, pos_embed the position embedding (as in TL)
        with torch.no_grad():
            tokens = lm.model.get_input_embeddings()(ids)
            positions = get_module(lm.model, lm.adapter.pos_embed)(torch.arange(ids.shape[1]))
        torch.testing.assert_close(acts["embed"], tokens, atol=0, rtol=0)
        # HF shares one position row across the batch when no position_ids are given: [1, pos, d]
        torch.testing.assert_close(acts["pos_embed"].expand_as(tokens), positions.expand_as(tokens), atol=0, rtol=0)
        torch.testing.assert_close(acts["embed"] + acts["pos_embed"], out.hidden_states[0], atol=ATOL, rtol=0)
    else:
        assert "pos_embed" not in acts
        torch.testing.assert_close(acts["embed"], out.hidden_states[0], atol=ATOL, rtol=0)
    torch.testing.assert_close(acts["final"], acts[f"resid_post.{L - 1}"], atol=ATOL, rtol=0)
    with torch.no_grad():
        logits = lm.model.get_output_embeddings()(get_module(lm.model, lm.adapter.final_norm)(acts["final"]))
        cap = getattr(lm.config, "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
    torch.testing.assert_close(logits, out.logits, atol=1e-4, rtol=0)


def test_sublayer_sites_add_up(lm):
    acts = capture(lm, _ids(), lm.site_names())
    for layer in range(lm.n_layers):
        pre, attn, mlp = (acts[f"{k}.{layer}"] for k in ("resid_pre", "attn_out", "mlp_out"))
        post = acts[f"resid_post.{layer}"]
        torch.testing.assert_close(pre + attn + mlp, post, atol=ATOL, rtol=0)
        torch.testing.assert_close(acts[f"attn_in.{layer}"], pre, atol=0, rtol=0)
        if lm.adapter.parallel:
            torch.testing.assert_close(acts[f"mlp_in.{layer}"], pre, atol=0, rtol=0)
        else:
            torch.testing.assert_close(acts[f"resid_mid.{layer}"], pre + attn, atol=ATOL, rtol=0)
            torch.testing.assert_close(acts[f"mlp_in.{layer}"], acts[f"resid_mid.{layer}"], atol=0, rtol=0)


def test_mlp_out_is_the_mlp_branch_computed_by_hand(lm):
    acts = capture(lm, _ids(), lm.site_names())
    for layer in range(lm.n_layers):
        expected = mlp_branch(lm, layer, acts[f"mlp_in.{layer}"])
        torch.testing.assert_close(acts[f"mlp_out.{layer}"], expected, atol=ATOL, rtol=0)


def test_sandwich_attn_out_is_normalized_attention_output():
    lm = tiny_model("gemma2")
    raw = {}
    block = lm.blocks[1]
    h = block.self_attn.register_forward_hook(lambda m, a, o: raw.__setitem__("attn", o[0].detach()))
    try:
        acts = capture(lm, _ids(), ["attn_out.1"])
    finally:
        h.remove()
    with torch.no_grad():
        torch.testing.assert_close(acts["attn_out.1"], block.post_attention_layernorm(raw["attn"]), atol=ATOL, rtol=0)


def test_capture_stops_after_deepest_site(lm):
    ids = _ids()
    calls = []
    head = lm.model.get_output_embeddings().register_forward_hook(lambda *a: calls.append("head"))
    last = lm.blocks[-1].register_forward_pre_hook(lambda *a: calls.append("last"))
    try:
        early = capture(lm, ids, ["resid_post.0"])
        assert calls == []
        full = capture(lm, ids, ["resid_post.0", "final"])
        assert calls == ["last"]
    finally:
        head.remove()
        last.remove()
    torch.testing.assert_close(early["resid_post.0"], full["resid_post.0"], atol=0, rtol=0)


def test_read_during_cached_generation_joins_steps():
    lm = tiny_model("llama")
    ids = _ids(batch=1, seq=5)
    with torch.no_grad(), read(lm, ["resid_post.1"]) as cache:
        out = lm.model.generate(ids, max_new_tokens=3, do_sample=False, pad_token_id=0)
    seq = cache.sequence("resid_post.1")
    assert seq.shape == (1, 5 + 3 - 1, lm.d_model)
    full = capture(lm, out[:, :-1], ["resid_post.1"])["resid_post.1"]
    torch.testing.assert_close(seq, full, atol=1e-4, rtol=0)


def test_site_names_are_complete_and_parse():
    lm = tiny_model("llama")
    names = lm.site_names()
    assert names[0] == "embed" and names[-1] == "final"
    assert len(names) == 2 + 7 * lm.n_layers
    for name in names:
        assert str(parse_site(name, lm.n_layers)) == name
    assert "resid_mid.0" not in all_site_names(3, parallel=True)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("resid_pre.9", "out of range"),
        ("resid_pre.-1", "out of range"),
        ("resid.1", "unknown site"),
        ("resid_pre", "unknown site"),
        ("blocks.1.attn.hook_z", "not a residual-stream site"),
        ("hook_resid_pre", "not a residual-stream site"),
        ("ln_final.hook_normalized", "final norm's output"),
        ("blocks.9.hook_resid_pre", "out of range"),
        ("pos_embed", "learned position embeddings"),
        ("hook_pos_embed", "learned position embeddings"),
    ],
)
def test_bad_sites_are_named(name, message):
    lm = tiny_model("llama")
    with pytest.raises(SiteError, match=message):
        capture(lm, _ids(), [name])


def test_resid_mid_refused_on_parallel_blocks():
    lm = tiny_model("gpt_neox")
    with pytest.raises(SiteError, match="parallel-residual"):
        capture(lm, _ids(), ["resid_mid.1"])


@pytest.mark.parametrize("family", ["gpt2", "llama", "gpt_neox"])
def test_transformer_lens_names_are_the_same_sites(family):
    lm = tiny_model(family)
    ours = [s for s in lm.site_names() if s != "final"]
    tl = [site_to_hook(s) for s in ours]
    assert all(name.startswith(("hook_", "blocks.")) for name in tl)
    assert tl[0] == "hook_embed" and "blocks.2.hook_resid_post" in tl and "blocks.0.hook_attn_in" in tl
    assert ("hook_pos_embed" in tl) == (family == "gpt2")
    ids = _ids()
    by_ours, by_tl = capture(lm, ids, ours), capture(lm, ids, tl)
    assert set(by_tl) == set(ours)  # results are keyed by steerscope names
    for site in ours:
        assert str(parse_site(site_to_hook(site), lm.n_layers, lm.adapter.parallel, family == "gpt2")) == site
        torch.testing.assert_close(by_tl[site], by_ours[site], atol=0, rtol=0)
    final = capture(lm, ids, ["final", f"blocks.{lm.n_layers - 1}.hook_resid_post"])
    torch.testing.assert_close(final["final"], final[f"resid_post.{lm.n_layers - 1}"], atol=0, rtol=0)


def test_gpt2_project_out_removes_direction_from_token_and_position_embeddings():
    lm = tiny_model("gpt2")
    assert residual_write_sites(lm)[:2] == ["embed", "pos_embed"]
    d = torch.randn(lm.d_model, generator=torch.Generator().manual_seed(3))
    with project_out(lm, d):
        acts = capture(lm, _ids(), ["resid_pre.0"])
    assert (acts["resid_pre.0"] @ (d / d.norm())).abs().max() < 1e-5

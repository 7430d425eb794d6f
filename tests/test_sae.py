"""Sparse autoencoders: math against direct loops, clamping through the real hook, the SAELens layout,
training that lowers the loss, resuming that matches an uninterrupted run, feature ranking."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from sklearn.metrics import roc_auc_score
from tiny_models import random_ids, tiny_model

from steerscope import capture
from steerscope.sae.features import auroc, find_features, rank_latents, text_latents, top_activating
from steerscope.sae.model import SAEConfig, SparseAutoencoder
from steerscope.sae.saelens import SAEFileError, hook_to_site, load_saelens, save_saelens, site_to_hook
from steerscope.sae.steer import sae_add_vector, sae_clamp
from steerscope.sae.train import SAETrainConfig, train_sae
from steerscope.steering.pairs import ContrastPair

pytestmark = pytest.mark.usefixtures("one_thread")
SITE = "resid_pre.1"


def _random_sae(arch="topk", d_in=32, d_sae=64, k=5, seed=0, site=SITE):
    sae = SparseAutoencoder(SAEConfig(d_in=d_in, d_sae=d_sae, architecture=arch, k=k, site=site), seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return sae


def _direct(sae, x):
    """Encode and decode one vector at a time with plain loops (numpy, float64)."""
    W_enc, b_enc = sae.W_enc.detach().double().numpy(), sae.b_enc.detach().double().numpy()
    W_dec, b_dec = sae.W_dec.detach().double().numpy(), sae.b_dec.detach().double().numpy()
    feats, recons = [], []
    for row in x.double().numpy():
        centred = row - b_dec
        pre = np.array([sum(centred[i] * W_enc[i, j] for i in range(len(row))) + b_enc[j] for j in range(sae.d_sae)])
        if sae.cfg.architecture == "topk":
            keep = set(np.argsort(-pre)[: sae.cfg.k].tolist())
            f = np.array([max(pre[j], 0.0) if j in keep else 0.0 for j in range(sae.d_sae)])
        elif sae.cfg.architecture == "jumprelu":
            th = sae.threshold.detach().double().numpy()
            f = np.array([max(pre[j], 0.0) if pre[j] > th[j] else 0.0 for j in range(sae.d_sae)])  # ReLU first
        else:
            f = np.maximum(pre, 0.0)
        recon = b_dec + sum(f[j] * W_dec[j] for j in range(sae.d_sae))
        feats.append(f)
        recons.append(recon)
    return np.array(feats), np.array(recons)


@pytest.mark.parametrize("arch", ["topk", "standard", "jumprelu"])
def test_encode_decode_match_direct_loops(arch):
    sae = _random_sae(arch, d_in=12, d_sae=20, k=4)
    x = torch.randn(5, 12, generator=torch.Generator().manual_seed(3))
    f_ref, x_ref = _direct(sae, x)
    f = sae.encode(x)
    np.testing.assert_allclose(f.detach().numpy(), f_ref, atol=1e-5)
    np.testing.assert_allclose(sae(x).detach().numpy(), x_ref, atol=1e-5)
    np.testing.assert_allclose((x - sae(x)).detach().numpy(), sae.error(x).detach().numpy(), atol=1e-6)
    if arch == "topk":
        assert ((f > 0).sum(-1) <= 4).all()


def test_config_errors_are_clear():
    with pytest.raises(ValueError, match="architecture"):
        SAEConfig(d_in=4, d_sae=8, architecture="gated")
    with pytest.raises(ValueError, match="k <= d_sae"):
        SAEConfig(d_in=4, d_sae=8, k=9)
    assert SAEConfig(d_in=4, d_sae=8, architecture="relu").architecture == "standard"


@pytest.fixture(scope="module")
def lm():
    return tiny_model("llama", tokenizer=True)


def test_clamp_at_the_current_value_leaves_the_model_unchanged(lm):
    sae = _random_sae(d_in=lm.d_model, d_sae=64, k=8)
    ids = random_ids(1, 7)
    clean = capture(lm, ids, [SITE, "resid_post.2"])
    f = sae.encode(clean[SITE][0]).detach()
    pos, latent = 4, int(f[4].argmax())
    mask = torch.zeros(1, 7, dtype=torch.bool)
    mask[0, pos] = True
    with torch.no_grad():
        base = lm.model(ids).logits
        with sae_clamp(lm, sae, latent, float(f[pos, latent]), positions=mask):
            same = lm.model(ids).logits
    torch.testing.assert_close(same, base, atol=1e-5, rtol=1e-5)


def test_clamp_changes_only_the_latents_share(lm):
    sae = _random_sae(d_in=lm.d_model, d_sae=64, k=8)
    ids = random_ids(2, 6)
    clean = capture(lm, ids, [SITE])[SITE]
    latent, value = 7, 3.5
    with sae_clamp(lm, sae, latent, value):
        edited = capture(lm, ids, [SITE])[SITE]  # the read hook runs after the clamp
    f = sae.encode(clean).detach()
    expected = clean + (value - f[..., latent]).unsqueeze(-1) * sae.W_dec[latent].detach()
    torch.testing.assert_close(edited, expected, atol=1e-5, rtol=1e-5)
    clamped = f.clone()
    clamped[..., latent] = value
    literal = sae.decode(clamped) + sae.error(clean)  # encode, set, decode, add the error term
    torch.testing.assert_close(edited, literal.detach(), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="out of range"), sae_clamp(lm, sae, 64, 1.0):
        pass


def test_sae_add_is_the_decoder_direction(lm):
    sae = _random_sae(d_in=lm.d_model, d_sae=64, k=8)
    vec = sae_add_vector(lm, sae, 5, norm=2.0)
    d = sae.W_dec[5].detach()
    torch.testing.assert_close(vec.vectors[SITE], d / d.norm() * 2.0)
    ids = random_ids(1, 5)
    clean = capture(lm, ids, [SITE])[SITE]
    with vec.apply(lm, coefficient=1.5):
        added = capture(lm, ids, [SITE])[SITE]
    torch.testing.assert_close(added - clean, (1.5 * vec.vectors[SITE]).expand_as(clean), atol=1e-5, rtol=1e-5)


# --- SAELens layout ---------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["topk", "standard", "jumprelu"])
def test_saelens_round_trip(tmp_path, arch):
    sae = _random_sae(arch, d_in=16, d_sae=48, k=6, site="resid_pre.10")
    sae.cfg.model_name = "tiny"
    save_saelens(sae, tmp_path / "sae")
    assert sorted(p.name for p in (tmp_path / "sae").iterdir()) == ["cfg.json", "sae_weights.safetensors"]
    cfg = json.loads((tmp_path / "sae" / "cfg.json").read_text())
    assert cfg["architecture"] == arch and cfg["d_in"] == 16 and cfg["d_sae"] == 48
    assert cfg["metadata"]["hook_name"] == "blocks.10.hook_resid_pre"
    back = load_saelens(tmp_path / "sae")
    assert back.cfg.site == "resid_pre.10" and back.cfg.k == sae.cfg.k and back.cfg.model_name == "tiny"
    for name, value in sae.state_dict().items():
        assert torch.equal(back.state_dict()[name], value)
    x = torch.randn(4, 16)
    torch.testing.assert_close(back.encode(x), sae.encode(x), atol=0, rtol=0)
    torch.testing.assert_close(back(x), sae(x), atol=0, rtol=0)


def _write_saelens_folder(folder, cfg: dict, sae: SparseAutoencoder, extra=None):
    """A folder as SAELens itself writes it (its own key names), independent of save_saelens."""
    folder.mkdir()
    (folder / "cfg.json").write_text(json.dumps(cfg))
    tensors = {k: v.detach().clone() for k, v in sae.state_dict().items()}
    save_file({**tensors, **(extra or {})}, folder / "sae_weights.safetensors")


def test_load_saelens_files_in_its_own_key_names(tmp_path):
    sae = _random_sae("topk", d_in=16, d_sae=32, k=3)
    v6 = {
        "d_in": 16,
        "d_sae": 32,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "k": 3,
        "architecture": "topk",
        "meta": {
            "model_name": "gpt2",
            "hook_name": "blocks.8.hook_resid_post",
            "hook_head_index": None,
            "context_size": 128,
            "prepend_bos": True,
            "sae_lens_version": "6.5.1",
        },
    }
    _write_saelens_folder(tmp_path / "v6", v6, sae)
    loaded = load_saelens(tmp_path / "v6")
    assert loaded.cfg.site == "resid_post.8" and loaded.cfg.model_name == "gpt2" and loaded.cfg.k == 3
    x = torch.randn(3, 16)
    torch.testing.assert_close(loaded(x), sae(x))

    relu = _random_sae("standard", d_in=16, d_sae=32)
    old = {
        "model_name": "gpt2-small",
        "hook_point": "blocks.2.hook_resid_pre",
        "hook_point_layer": 2,
        "hook_point_head_index": None,
        "d_in": 16,
        "d_sae": 32,
        "dtype": "torch.float32",
        "device": "cuda",
        "context_size": 128,
        "activation_fn_str": "relu",
        "apply_b_dec_to_input": True,
        "finetuning_scaling_factor": False,
        "normalize_activations": False,
        "prepend_bos": True,
        "sae_lens_training_version": "2.1.3",
    }
    _write_saelens_folder(tmp_path / "old", old, relu, {"scaling_factor": torch.ones(32)})
    loaded = load_saelens(tmp_path / "old")
    assert loaded.cfg.architecture == "standard" and loaded.cfg.site == "resid_pre.2"
    torch.testing.assert_close(loaded(x), relu(x))

    old_topk = {**old, "activation_fn_str": "topk", "activation_fn_kwargs": {"k": 3}}
    _write_saelens_folder(tmp_path / "old_topk", old_topk, sae)
    assert load_saelens(tmp_path / "old_topk").cfg.k == 3


def test_jumprelu_with_negative_thresholds_applies_relu_first():
    sae = _random_sae("jumprelu", d_in=12, d_sae=40)
    with torch.no_grad():
        sae.threshold.fill_(-1.0)
    x = torch.randn(6, 12, generator=torch.Generator().manual_seed(4))
    pre = sae.pre_acts(x)
    assert bool(((pre > -1) & (pre < 0)).any()), "the test needs pre-activations between threshold and 0"
    assert float(sae.encode(x).detach().min()) >= 0.0
    np.testing.assert_allclose(sae.encode(x).detach().numpy(), _direct(sae, x)[0], atol=1e-5)


def test_rescale_acts_by_decoder_norm_is_folded_on_loading(tmp_path):
    sae = _random_sae("topk", d_in=16, d_sae=32, k=4)  # decoder rows of norm about 1.2, far from 1
    cfg = {"d_in": 16, "d_sae": 32, "architecture": "topk", "k": 4, "rescale_acts_by_decoder_norm": True}
    _write_saelens_folder(tmp_path / "rescaled", cfg, sae)
    loaded = load_saelens(tmp_path / "rescaled")
    assert loaded.cfg.meta["decoder_norm_folded"] is True
    torch.testing.assert_close(loaded.W_dec.norm(dim=-1), torch.ones(32))
    # SAELens's rescaled TopK, written out by hand: topk of pre * |W_dec_i|, then (f / |W_dec_i|) @ W_dec + b_dec
    x = torch.randn(8, 16, generator=torch.Generator().manual_seed(5))
    norms = sae.W_dec.detach().norm(dim=-1)
    pre = ((x - sae.b_dec) @ sae.W_enc + sae.b_enc).detach() * norms
    top = pre.topk(4, dim=-1)
    f = torch.zeros_like(pre).scatter(-1, top.indices, top.values.relu())
    recon = (f / norms) @ sae.W_dec.detach() + sae.b_dec.detach()
    torch.testing.assert_close(loaded.encode(x), f, atol=1e-5, rtol=0)
    torch.testing.assert_close(loaded(x), recon, atol=1e-5, rtol=0)
    assert (loaded.encode(x) - sae.encode(x)).abs().max() > 1e-2, "ignoring the flag would differ"
    save_saelens(loaded, tmp_path / "again")  # written folded: no flag, so it is not folded twice
    torch.testing.assert_close(load_saelens(tmp_path / "again").W_enc, loaded.W_enc, atol=0, rtol=0)
    with torch.no_grad():
        sae.W_dec[3] = 0.0
    _write_saelens_folder(tmp_path / "dead", cfg, sae)
    with pytest.raises(SAEFileError, match="decoder row 3 is zero"):
        load_saelens(tmp_path / "dead")
    _write_saelens_folder(tmp_path / "flag", {**cfg, "rescale_acts_by_decoder_norm": "yes"}, sae)
    with pytest.raises(SAEFileError, match="rescale_acts_by_decoder_norm must be true or false"):
        load_saelens(tmp_path / "flag")


def test_saelens_errors_name_the_problem(tmp_path):
    with pytest.raises(SAEFileError, match="cfg.json is missing"):
        load_saelens(tmp_path)
    sae = _random_sae("topk", d_in=8, d_sae=16, k=2)
    bad = {"d_in": 8, "d_sae": 16, "architecture": "topk", "k": 2, "normalize_activations": "layer_norm"}
    _write_saelens_folder(tmp_path / "norm", bad, sae)
    with pytest.raises(SAEFileError, match="normalize_activations"):
        load_saelens(tmp_path / "norm")
    wrong = {"d_in": 8, "d_sae": 17, "architecture": "topk", "k": 2}
    _write_saelens_folder(tmp_path / "shape", wrong, sae)
    with pytest.raises(SAEFileError, match="needs"):
        load_saelens(tmp_path / "shape")


def test_hook_names_map_to_sites():
    for site in ("resid_pre.3", "resid_post.0", "attn_out.11", "mlp_out.2", "resid_mid.5", "embed", "pos_embed"):
        assert hook_to_site(site_to_hook(site)) == site
    assert site_to_hook("resid_pre.3") == "blocks.3.hook_resid_pre"
    assert site_to_hook("pos_embed") == "hook_pos_embed" and hook_to_site("hook_embed") == "embed"


# --- training --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("corpus") / "words.txt"
    docs = [" ".join(f"w{int(i)}" for i in rng.integers(0, 60, 24)) for _ in range(300)]
    path.write_text("\n\n".join(docs))
    return str(path)


def _cfg(corpus, **kw):
    base = dict(
        site=SITE,
        expansion=4,
        k=4,
        tokens=2000,
        seq_len=16,
        batch_size=64,
        chunk_sequences=24,
        n_eval=8,
        source=corpus,
        checkpoint_every=4,
        dead_tokens=500,
    )
    return SAETrainConfig(**{**base, **kw})


@pytest.mark.parametrize("arch", ["topk", "standard"])
def test_training_lowers_reconstruction_loss(lm, corpus, tmp_path, arch):
    cfg = _cfg(corpus, architecture=arch, l1_coefficient=0.05, lr=1e-2, tokens=3000)
    result = train_sae(lm, tmp_path / "run", cfg, show_progress=False)
    losses = [row[1] for row in result["losses"]]
    assert losses[-1] < 0.8 * losses[0]
    assert result["eval"]["fve"] > 0.2 and 0 < result["eval"]["l0"] <= (4 if arch == "topk" else 128)
    assert result["flops_estimate"]["total"] > 0 and result["train_tokens"] > 0
    sae = load_saelens(tmp_path / "run")
    assert sae.cfg.site == SITE and sae.d_sae == 4 * lm.d_model
    assert np.isfinite(result["eval"]["delta_ce"])


def test_resume_matches_an_uninterrupted_run(lm, corpus, tmp_path):
    cfg = _cfg(corpus)
    whole = train_sae(lm, tmp_path / "whole", cfg, show_progress=False)
    paused = train_sae(lm, tmp_path / "paused", cfg, show_progress=False, stop_after=9)
    assert paused["finished"] is False and paused["step"] == 9
    resumed = train_sae(lm, tmp_path / "paused", cfg, show_progress=False)
    a = load_file(tmp_path / "whole" / "sae_weights.safetensors")
    b = load_file(tmp_path / "paused" / "sae_weights.safetensors")
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-6, rtol=1e-6)
    assert resumed["eval"]["fve"] == pytest.approx(whole["eval"]["fve"], abs=1e-6)
    with pytest.raises(ValueError, match="other settings"):
        train_sae(lm, tmp_path / "paused", _cfg(corpus, k=3), show_progress=False, stop_after=1)


# --- features --------------------------------------------------------------------------------------


def test_auroc_matches_sklearn():
    g = torch.Generator().manual_seed(0)
    pos = torch.randn(9, 6, generator=g).relu()
    neg = (torch.randn(7, 6, generator=g) - 0.5).relu()
    got = auroc(pos, neg, chunk=4)
    for j in range(6):
        y = np.r_[np.ones(9), np.zeros(7)]
        s = np.r_[pos[:, j].numpy(), neg[:, j].numpy()]
        assert got[j].item() == pytest.approx(roc_auc_score(y, s), abs=1e-6)
    ranked = rank_latents(pos, neg, top=2)
    assert ranked["positive"][0]["auroc"] >= ranked["positive"][1]["auroc"]
    assert ranked["negative"][0]["auroc"] <= ranked["negative"][1]["auroc"]


def test_find_features_and_snippets(lm, corpus):
    sae = _random_sae(d_in=lm.d_model, d_sae=64, k=8)
    pairs = [ContrastPair(f"w90 w{i} w{i + 1}", f"w91 w{i} w{i + 1}") for i in range(6)]
    last = text_latents(lm, sae, [p.positive for p in pairs], "last", batch_size=4)
    direct = sae.encode(
        torch.stack([capture(lm, lm.tokenize(p.positive)["input_ids"], [SITE])[SITE][0, -1] for p in pairs])
    )
    torch.testing.assert_close(last, direct, atol=1e-5, rtol=1e-5)
    ranked = find_features(lm, sae, pairs, read="max", top=3)
    assert len(ranked["positive"]) == 3 and all(0 <= r["auroc"] <= 1 for r in ranked["positive"])
    latent = ranked["positive"][0]["latent"]
    snippets = top_activating(lm, sae, [latent], source=corpus, n_sequences=8, seq_len=16, top=3)
    assert len(snippets[latent]) <= 3
    assert all("«" in s["text"] and s["value"] > 0 for s in snippets[latent])


def test_contract_methods_choose_the_top_latent_and_record_cost(lm, tmp_path):
    from steerscope.methods import fit
    from steerscope.steering.methods import mean_diff

    sae = _random_sae(d_in=lm.d_model, d_sae=64, k=8)
    sae.cfg.meta = {"train_tokens": 1000, "train_seconds": 2.0, "train_flops": 3e9}
    save_saelens(sae, tmp_path / "sae")
    pairs = [ContrastPair(f"w90 w{i} w{i + 2}", f"w91 w{i} w{i + 2}") for i in range(5)]
    best = find_features(lm, sae, pairs, top=1)["positive"][0]["latent"]
    clamp = fit("sae_clamp", lm, pairs, [SITE], sae=tmp_path / "sae")
    assert clamp.latent == best and clamp.scale > 0
    assert clamp.meta["cost"]["sae_train_tokens"] == 1000 and clamp.meta["cost"]["pair_tokens"] == 30
    ids = random_ids(1, 5)
    clean = capture(lm, ids, [SITE])[SITE]
    with clamp.apply(lm, coefficient=2.0):
        edited = capture(lm, ids, [SITE])[SITE]
    f = sae.encode(clean).detach()[..., best]
    expected = clean + (2.0 * clamp.scale - f).unsqueeze(-1) * sae.W_dec[best].detach()
    torch.testing.assert_close(edited, expected, atol=1e-4, rtol=1e-4)
    # default scale: matched norm (mean-difference norm over the decoder norm); or the largest activation
    md_norm = mean_diff(lm, pairs, [SITE]).meta["norms"][SITE]
    assert clamp.scale == pytest.approx(md_norm / float(sae.W_dec[best].detach().norm()), rel=1e-5)
    by_max = fit("sae_clamp", lm, pairs, [SITE], sae=sae, scale="max_activation")
    last = [capture(lm, lm.tokenize([p.positive]), [SITE])[SITE][0, -1] for p in pairs]
    assert by_max.scale == pytest.approx(max(float(sae.encode(x)[best].detach()) for x in last), rel=1e-5)
    by_peak = fit("sae_clamp", lm, pairs, [SITE], sae=sae, read="max")  # latent by max, norm at last token
    assert by_peak.scale == pytest.approx(md_norm / float(sae.W_dec[by_peak.latent].detach().norm()), rel=1e-5)
    with pytest.raises(ValueError, match="scale must be"):
        fit("sae_clamp", lm, pairs, [SITE], sae=sae, scale="huge")
    added = fit("sae_add", lm, pairs, [SITE], sae=sae, latent=3)
    assert added.meta["latent"] == 3 and added.meta["method"] == "sae_add"
    assert added.meta["norms"][SITE] == pytest.approx(mean_diff(lm, pairs, [SITE]).meta["norms"][SITE], rel=1e-5)
    with pytest.raises(ValueError, match="reads resid_pre.1"):
        fit("sae_add", lm, pairs, ["resid_pre.2"], sae=sae)


@pytest.mark.embedded
def test_clamp_keeps_the_default_model_exact_at_the_current_value():
    from steerscope import load_model

    lm = load_model("default")
    sae = _random_sae(d_in=lm.d_model, d_sae=1152, k=32, site="resid_pre.10")
    batch = lm.tokenize(["The cat sat on the mat and purred.", "A short one."])
    with torch.no_grad():
        base = lm.model(**batch).logits
        f = sae.encode(capture(lm, batch, ["resid_pre.10"])["resid_pre.10"])
        latent = int(f[0, -1].argmax())
        mask = torch.zeros_like(batch["attention_mask"], dtype=torch.bool)
        mask[0, -1] = True
        with sae_clamp(lm, sae, latent, float(f[0, -1, latent]), positions=mask):
            same = lm.model(**batch).logits
        with sae_clamp(lm, sae, latent, float(f[0, -1, latent]) + 50.0, positions=mask):
            moved = lm.model(**batch).logits
    torch.testing.assert_close(same, base, atol=1e-5, rtol=1e-5)
    assert (moved[0, -1] - base[0, -1]).abs().max() > 1e-2
    torch.testing.assert_close(moved[1], base[1], atol=1e-5, rtol=1e-5)


def test_sae_add_runs_as_a_sweep_method(lm, tmp_path):
    from sweep_fixtures import tiny_config

    from steerscope.evaluate.store import ResultStore
    from steerscope.sweep.runner import run_sweep

    sae = _random_sae(d_in=lm.d_model, d_sae=64, k=8)
    sae.cfg.meta = {"train_tokens": 1000, "train_seconds": 2.0, "train_flops": 3e9}
    save_saelens(sae, tmp_path / "sae")
    config = tiny_config(
        tmp_path,
        methods=["mean_diff", "sae_add"],
        sites=[SITE],
        n_pairs=[2],
        seeds=[0],
        method_options={"sae_add": {"sae": str(tmp_path / "sae")}},
    )
    with ResultStore(run_sweep(config, tmp_path / "out", models={"tiny": lm})) as store:
        rows = store.rows(method="sae_add")
    assert {r["split"] for r in rows} == {"validation", "test"} and {r["site"] for r in rows} == {SITE}

"""The method catalogue: every record fits through one `fit` into an Intervention; the registry and its
checks; the methods as pure functions of activations against independent numpy computations."""

import numpy as np
import pytest
import torch
from tiny_models import random_ids, tiny_model

from steerscope import capture
from steerscope.core.extract import text_vectors
from steerscope.methods import (
    METHODS,
    Catalogue,
    MethodError,
    MethodSpec,
    at_site,
    fit,
    is_control,
    method_names,
    register,
)
from steerscope.sae.model import SAEConfig, SparseAutoencoder
from steerscope.sae.saelens import save_saelens
from steerscope.steering.contract import Intervention
from steerscope.steering.methods import mean_diff_direction, pca_direction, probe_direction
from steerscope.steering.pairs import ContrastPair

SITE = "resid_pre.2"


@pytest.fixture(scope="module")
def lm():
    return tiny_model("llama", tokenizer=True)


@pytest.fixture(scope="module")
def sae_folder(lm, tmp_path_factory):
    sae = SparseAutoencoder(SAEConfig(d_in=lm.d_model, d_sae=64, architecture="topk", k=8, site=SITE), seed=0)
    folder = tmp_path_factory.mktemp("sae") / "sae"
    save_saelens(sae, folder)
    return str(folder)


def _pairs(n):
    return [ContrastPair(f"w90 w{i} w{i + 3}", f"w91 w{i} w{i + 5}") for i in range(n)]


def _options(name, sae_folder):
    if name == "actadd":
        return {"pad_token": "w0"}  # the tiny tokenizer has no space token
    return {"sae": sae_folder} if any(option == "sae" for option, _ in METHODS[name].needs) else {}


@pytest.mark.parametrize("name", list(METHODS))
def test_fit_runs_every_method_into_an_intervention(lm, sae_folder, name):
    spec = METHODS[name]
    n = spec.max_pairs or 4
    fitted = fit(name, lm, _pairs(n), [SITE], **_options(name, sae_folder))
    assert isinstance(fitted, Intervention)
    assert fitted.sites == [SITE] and fitted.meta["method"] == name and fitted.meta["n_pairs"] == n
    ids = random_ids(2, 6)
    clean = capture(lm, ids, ["resid_post.2"])["resid_post.2"]
    with fitted.apply(lm, coefficient=3.0, positions="all"):
        steered = capture(lm, ids, ["resid_post.2"])["resid_post.2"]
    assert not torch.allclose(clean, steered)  # it steers
    torch.testing.assert_close(capture(lm, ids, ["resid_post.2"])["resid_post.2"], clean)  # and comes off
    assert at_site(fitted, SITE).sites == [SITE]


def test_the_catalogue_names_every_method_once():
    assert method_names() == ["actadd", "mean_diff", "pca", "probe", "random", "sae_add", "sae_clamp"]
    assert method_names(control=True) == ["random"] and is_control("random") and not is_control("unsteered")
    assert [n for n, s in METHODS.items() if not s.vector] == ["sae_clamp"]


def test_the_registry_refuses_a_duplicate():
    spec = MethodSpec("mine", lambda lm, pairs, sites, **kw: None, "a test method")
    fresh = Catalogue([spec])
    with pytest.raises(MethodError, match="'mine' is already in the catalogue"):
        fresh.register(spec)
    with pytest.raises(MethodError, match="'mean_diff' is already in the catalogue"):
        register(METHODS["mean_diff"])
    assert "mine" not in METHODS and list(fresh) == ["mine"]


@pytest.mark.parametrize(
    ("name", "n", "message"),
    [
        ("actadd", 2, "actadd takes exactly one contrast pair, got 2"),
        ("actadd", 0, "actadd takes exactly one contrast pair, got 0"),
        ("pca", 1, "pca takes at least 2 contrast pairs, got 1"),
        ("probe", 1, "probe takes at least 2 contrast pairs, got 1"),
        ("mean_diff", 0, "mean_diff takes at least 1 contrast pair, got 0"),
        ("sae_clamp", 0, "sae_clamp takes at least 1 contrast pair, got 0"),
    ],
)
def test_pair_counts_come_from_the_record(lm, name, n, message):
    with pytest.raises(MethodError) as info:
        fit(name, lm, _pairs(n), [SITE])
    assert str(info.value) == message


def test_reads_options_and_names_are_checked(lm, sae_folder):
    with pytest.raises(MethodError, match="unknown method 'magic'; methods: actadd, mean_diff"):
        fit("magic", lm, _pairs(2), [SITE])
    with pytest.raises(MethodError, match="actadd reads every position of its pair and takes no read option"):
        fit("actadd", lm, _pairs(1), [SITE], read="last")
    with pytest.raises(MethodError, match="pca reads last, answer, mean, max, got read='first'"):
        fit("pca", lm, _pairs(2), [SITE], read="first")
    with pytest.raises(MethodError, match="sae_add reads last, max, got read='mean'"):
        fit("sae_add", lm, _pairs(2), [SITE], read="mean", sae=sae_folder)
    with pytest.raises(MethodError, match="sae_clamp needs the option sae"):
        fit("sae_clamp", lm, _pairs(2), [SITE])
    # the site rule: an SAE method works at its SAE's site, which must be among those asked for
    spec = METHODS["sae_clamp"]
    assert spec.sites({"sae": sae_folder}, ["resid_pre.1", SITE]) == [SITE]
    with pytest.raises(MethodError, match="reads resid_pre.2; add it to sites"):
        spec.sites({"sae": sae_folder}, ["resid_pre.1"])
    assert METHODS["mean_diff"].sites({}, ["resid_pre.1", SITE]) == ["resid_pre.1", SITE]


def test_max_read_equals_the_largest_real_token(lm):
    texts = ["w90 w1 w2 w3", "w5", "w7 w8"]
    got = text_vectors(lm, texts, [SITE], "max", batch_size=3)[SITE]
    after_first = text_vectors(lm, texts, [SITE], "max", batch_size=2, skip_first=True)[SITE]
    for i, t in enumerate(texts):
        act = capture(lm, torch.tensor([lm.tokenizer(t)["input_ids"]]), [SITE])[SITE][0]  # alone: no padding
        torch.testing.assert_close(got[i], act.amax(0), atol=1e-5, rtol=1e-5)
        if len(act) > 1:
            torch.testing.assert_close(after_first[i], act[1:].amax(0), atol=1e-5, rtol=1e-5)


# --- the methods as functions of activations, against numpy -------------------------------------------


def _activations(n=12, d=5, seed=0):
    rng = np.random.default_rng(seed)
    concept = rng.normal(size=d)
    neg = rng.normal(size=(n, d))
    pos = neg + concept + 0.3 * rng.normal(size=(n, d))
    return pos, neg


def test_mean_diff_direction_against_numpy():
    pos, neg = _activations()
    got = mean_diff_direction(torch.tensor(pos, dtype=torch.float32), torch.tensor(neg, dtype=torch.float32))
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), pos.astype(np.float32).mean(0) - neg.astype(np.float32).mean(0), atol=1e-6)
    with pytest.raises(ValueError, match="same shape"):
        mean_diff_direction(torch.zeros(3, 5), torch.zeros(2, 5))


@pytest.mark.parametrize("variant", ["diff", "center"])
def test_pca_direction_against_the_top_eigenvector(variant):
    pos, neg = _activations(seed=1)
    if variant == "diff":
        data = (pos - neg) - (pos - neg).mean(0)
    else:
        mid = (pos + neg) / 2
        data = np.concatenate([pos - mid, neg - mid])
    values, vectors = np.linalg.eigh(data.T @ data)  # independent: eigenvectors of the scatter matrix
    top = vectors[:, np.argmax(values)]
    top = top if ((pos - neg) @ top).mean() > 0 else -top
    got = pca_direction(torch.tensor(pos), torch.tensor(neg), variant).numpy()
    np.testing.assert_allclose(got, top, atol=1e-8)
    assert np.linalg.norm(got) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="variant"):
        pca_direction(torch.tensor(pos), torch.tensor(neg), "sideways")


def _newton_logistic(x, y, C, steps=100):
    """L2-regularised logistic regression (unpenalised intercept) by Newton's method: min 0.5|w|^2 + C sum loss."""
    xb = np.c_[x, np.ones(len(x))]
    theta = np.zeros(xb.shape[1])
    penalty = np.diag([1.0] * x.shape[1] + [0.0])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-xb @ theta))
        grad = penalty @ theta + C * xb.T @ (p - y)
        hess = penalty + C * (xb.T * (p * (1 - p))) @ xb
        theta -= np.linalg.solve(hess, grad)
    return theta[:-1]


@pytest.mark.parametrize("C", [0.1, 1.0])
def test_probe_direction_against_newtons_method(C):
    pos, neg = _activations(n=20, seed=2)
    got = probe_direction(torch.tensor(pos), torch.tensor(neg), C=C, seed=0).numpy()
    w = _newton_logistic(np.r_[pos, neg], np.r_[np.ones(20), np.zeros(20)], C)
    # sklearn's lbfgs stops at its tolerance (1e-4): the directions agree to about that, not to rounding
    assert float(got @ w / np.linalg.norm(w)) > 1 - 1e-6
    assert np.linalg.norm(got) == pytest.approx(1.0)

"""The effective layer horizon against a slow sublayer-by-sublayer recomputation, every variant."""

import numpy as np
import pytest
import torch
from reference import slow_horizon_logits
from tiny_models import FAMILIES, random_ids, tiny_model

from steerscope.core.hooks import run_forward
from steerscope.depth.horizon import (
    HorizonVariant,
    check_ks,
    clean_run,
    horizon_batch,
    output_means,
    patched_logits,
    summarize_horizon,
)
from steerscope.evaluate.metrics import clean_reference, next_token_metrics

VARIANTS = {
    "default": HorizonVariant(),
    "propagated": HorizonVariant(source="propagated"),
    "keep_embedding": HorizonVariant(keep_embedding=True),
    "mean": HorizonVariant(fill="mean"),
    "enforce_from_1": HorizonVariant(enforce_from=1),
    "readout_only": HorizonVariant(readout_only=True),
    "position0_keep": HorizonVariant(position0="keep"),
    "propagated_mean_keep0": HorizonVariant(source="propagated", fill="mean", position0="keep"),
    "mean_keep_embedding_from0": HorizonVariant(fill="mean", keep_embedding=True, enforce_from=0),
}


def _ids(batch=2, seq=6, seed=1):
    return random_ids(batch, seq, seed)


def _fast(lm, ids, k, variant):
    means = output_means(lm, [ids]) if variant.fill == "mean" else None
    return patched_logits(lm, ids, k, clean_run(lm, ids), variant, means)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", list(VARIANTS))
def test_fast_horizon_matches_slow_recomputation(family, name):
    lm = tiny_model(family)
    ids = _ids()
    variant = VARIANTS[name]
    for k in (1, 2):
        fast = _fast(lm, ids, k, variant)
        slow = slow_horizon_logits(lm, ids, k, variant)
        torch.testing.assert_close(fast, slow, atol=1e-4, rtol=1e-4, msg=f"{family} {name} k={k}")
    clean = run_forward(lm, ids).logits
    assert not torch.allclose(_fast(lm, ids, 1, variant), clean, atol=1e-3), "k=1 must change the model"


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("source", ["clean", "propagated"])
def test_full_window_is_the_clean_model(family, source):
    lm = tiny_model(family)
    ids = _ids()
    with torch.no_grad():
        clean = run_forward(lm, ids).logits
    for k in (lm.n_layers, lm.n_layers + 1, lm.n_layers + 5):
        got = _fast(lm, ids, k, HorizonVariant(source=source))
        assert (got - clean).abs().max() < 1e-5
    # every layer patched, but each window holds the embedding and every earlier output
    full = HorizonVariant(source=source, keep_embedding=True, enforce_from=0)
    got = _fast(lm, ids, lm.n_layers + 1, full)
    assert (got - clean).abs().max() < 1e-5


def test_metrics_against_hand_computation():
    torch.manual_seed(0)
    ids = torch.randint(0, 5, (2, 4))
    clean, patched = torch.randn(2, 4, 5), torch.randn(2, 4, 5)
    got = next_token_metrics(clean_reference(clean, ids), patched)
    for b in range(2):
        dce, kl, agree = [], [], []
        for t in (1, 2):  # position 0's prediction and the last position are not scored
            p, q = torch.softmax(clean[b, t].double(), -1), torch.softmax(patched[b, t].double(), -1)
            target = ids[b, t + 1]
            dce.append(-torch.log(q[target]) + torch.log(p[target]))
            kl.append((p * (p / q).log()).sum())
            agree.append(float(p.argmax() == q.argmax()))
        assert abs(got["delta_ce"][b] - sum(dce) / 2) < 1e-5
        assert abs(got["kl"][b] - sum(kl) / 2) < 1e-5
        assert abs(got["top1"][b] - sum(agree) / 2) < 1e-12
    same = next_token_metrics(clean_reference(clean, ids), clean)
    assert same["kl"].abs().max() < 1e-6 and same["top1"].min() == 1


def test_sweep_and_k_star():
    lm = tiny_model("llama")
    ids = _ids(batch=3, seq=8)
    ks = check_ks(None, lm.n_layers)
    per_seq = horizon_batch(lm, ids, ks)
    assert len(per_seq["kl"]) == len(ks) and len(per_seq["kl"][0]) == 3
    assert max(per_seq["kl"][-1]) < 1e-6  # k = L is the clean model
    summary = summarize_horizon(ks, per_seq, {"delta_ce": 0.1, "kl": 0.1}, n_boot=200)
    assert summary["k_star"]["kl"]["k"] is not None
    row = summary["per_k"][0]
    assert row["kl_ci"][0] <= row["kl"] <= row["kl_ci"][1]
    strict = summarize_horizon(ks[:1], {m: v[:1] for m, v in per_seq.items()}, {"kl": 1e-12}, n_boot=50)
    assert strict["k_star"]["kl"]["k"] is None and "not defined" in strict["k_star"]["kl"]["note"]


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="source must be one of"):
        HorizonVariant(source="sideways")
    with pytest.raises(ValueError, match="readout_only"):
        HorizonVariant(readout_only=True, source="propagated")
    with pytest.raises(ValueError, match=">= 1"):
        check_ks([0, 1], 3)
    lm = tiny_model("llama")
    ids = _ids()
    with pytest.raises(ValueError, match="output means"):
        patched_logits(lm, ids, 1, clean_run(lm, ids), HorizonVariant(fill="mean"))
    assert np.isfinite(summarize_horizon([1], horizon_batch(lm, ids, [1]), {"kl": 0.1})["clean_ce"])


@pytest.mark.parametrize("family", FAMILIES)
def test_resumed_passes_equal_full_recomputation(family):
    """Every variant's pass started at its first patched layer equals the pass through the whole model."""
    lm = tiny_model(family)
    ids = _ids(seq=7)
    clean = clean_run(lm, ids)
    means = output_means(lm, [ids])
    for name, variant in VARIANTS.items():
        for k in range(1, lm.n_layers + 1):
            fast = patched_logits(lm, ids, k, clean, variant, means, resume=True)
            full = patched_logits(lm, ids, k, clean, variant, means, resume=False)
            assert (fast - full).abs().max() < 1e-5, f"{family} {name} k={k}"


@pytest.mark.parametrize("family", ["llama", "gpt2", "gpt_neox", "gemma3"])
def test_one_layer_truncation_matches_slow_recomputation(family):
    lm = tiny_model(family)
    ids = _ids(seq=7)
    clean = clean_run(lm, ids)
    means = output_means(lm, [ids])
    for name in ("default", "keep_embedding", "mean", "position0_keep"):
        variant = VARIANTS[name]
        for n in range(lm.n_layers):
            for k in (1, 2, 3):
                fast = patched_logits(lm, ids, k, clean, variant, means, layers=[n])
                slow = slow_horizon_logits(lm, ids, k, variant, layers=[n])
                torch.testing.assert_close(fast, slow, atol=1e-4, rtol=1e-4, msg=f"{family} {name} n={n} k={k}")

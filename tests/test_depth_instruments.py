"""Sublayer contributions, effective-depth rules and layer skipping / swapping against direct, slow computations."""

import math

import numpy as np
import pytest
import torch
from reference import clean_outputs, manual_stream
from tiny_models import FAMILIES, random_ids, tiny_model

from steerscope.core.hooks import run_forward
from steerscope.depth.contributions import contributions, contributions_batch
from steerscope.depth.effective import depth_by_cosine, depth_by_kl, depth_by_top5, effective_depths, last_sign_change
from steerscope.depth.skipping import join_batches, layer_order, skipping_batch, summarize_skipping
from steerscope.evaluate.metrics import clean_reference, next_token_metrics

# --- contributions ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["llama", "gpt2", "gpt_neox", "gpt_neox_seq", "gemma2"])
def test_contributions_match_a_direct_computation(family):
    lm = tiny_model(family)
    ids = random_ids(2, 7, seed=5)
    e, outs, _ = clean_outputs(lm, ids)  # plain torch hooks on the writing modules
    got = contributions_batch(lm, ids)
    stream = e
    for n in range(lm.n_layers):
        attn, mlp = outs[2 * n], outs[2 * n + 1]
        mlp_reads = stream if lm.adapter.parallel else stream + attn
        for part, x, o in (("attn", stream, attn), ("mlp", mlp_reads, mlp), ("layer", stream, attn + mlp)):
            for b in range(2):
                ratio = np.mean([float(o[b, t].norm() / x[b, t].norm()) for t in range(1, 7)])
                cos = np.mean([float(torch.cosine_similarity(o[b, t], x[b, t], dim=0)) for t in range(1, 7)])
                assert got[f"{part}_ratio"][n][b] == pytest.approx(ratio, rel=1e-4), (part, n)
                assert got[f"{part}_cosine"][n][b] == pytest.approx(cos, abs=1e-4), (part, n)
        stream = stream + attn + mlp
    rows = contributions(lm, [ids, random_ids(2, 7, seed=6)], n_boot=50)
    assert len(rows) == lm.n_layers and rows[0]["attn_ratio_ci"][0] <= rows[0]["attn_ratio"]


# --- effective depth ----------------------------------------------------------------------------------------


def test_sign_change_rule_on_hand_made_curves():
    assert last_sign_change([-0.2, -0.1, 0.05, 0.2, 0.3]) == 2
    assert last_sign_change([0.1, -0.1, 0.2, -0.3, -0.2, -0.1]) == 3
    assert last_sign_change([0.1, 0.2, 0.3]) is None
    # the later change of the two sublayer curves wins; depth counts layers 0..l
    assert depth_by_cosine([-0.1, 0.1, 0.1, 0.1], [-0.1, -0.1, -0.1, 0.2]) == 4
    assert depth_by_cosine([0.1, 0.1], [0.2, 0.3]) is None


def test_kl_and_top5_rules_on_hand_made_curves():
    # max 8 at layer 1; half is 4; first layer after it below 4 is layer 3 -> depth 4
    assert depth_by_kl([6.0, 8.0, 5.0, 3.9, 1.0, 0.0]) == 4
    assert depth_by_kl([1.0, 0.9, 0.8]) is None  # never below half the maximum
    assert depth_by_top5([0.0, 0.1, 0.3, 0.31, 0.9]) == 4  # exceeds, not reaches
    assert depth_by_top5([0.0, 0.2]) is None
    got = effective_depths(
        [{"attn_cosine": a, "mlp_cosine": m} for a, m in [(-0.1, -0.2), (0.1, -0.1), (0.2, 0.1), (0.3, 0.1)]],
        [{"kl": k, "top5": t} for k, t in [(4.0, 0.0), (3.0, 0.1), (1.0, 0.5), (0.0, 1.0)]],
        4,
    )
    assert got["depths"] == {"cosine": 3, "kl": 3, "top5": 3}
    assert got["cosine_by_sublayer"] == {"attn": 2, "mlp": 3}
    assert got["over_layers"]["kl"] == 0.75
    assert effective_depths(None, None, 4)["depths"] == {"cosine": None, "kl": None, "top5": None}


# --- skipping and swapping ----------------------------------------------------------------------------------


def test_layer_order():
    assert layer_order(4, skip=1) == [0, 2, 3]
    assert layer_order(4, swap=2) == [0, 1, 3, 2]
    with pytest.raises(ValueError, match="no next layer"):
        layer_order(4, swap=3)


@pytest.mark.parametrize("family", FAMILIES)
def test_skipping_and_swapping_match_a_hand_patched_run(family):
    lm = tiny_model(family)
    ids = random_ids(2, 8, seed=2)
    got = skipping_batch(lm, ids)
    with torch.no_grad():
        clean_logits = run_forward(lm, ids).logits
    ref = clean_reference(clean_logits, ids)
    clean_after, _ = manual_stream(lm, ids)
    L = lm.n_layers
    for i in range(L):
        after, logits = manual_stream(lm, ids, layer_order(L, skip=i))
        want = next_token_metrics(ref, logits)
        for m in ("delta_ce", "kl", "top1"):
            assert np.allclose(got["skip"][m][i], want[m].numpy(), atol=1e-4), (family, "skip", i, m)
        # the skip matrix: what each later layer j adds, against the clean run's
        clean_in = [run_embedding(lm, ids), *clean_after]  # clean_in[n]: the stream entering layer n
        patched_in = {i + 1: clean_in[i], **{j + 1: h for j, h in zip(range(i + 1, L), after[i:], strict=True)}}
        for j in range(L):
            if j <= i:
                assert all(math.isnan(v) for v in got["matrix"][i][j])
                continue
            c_patched, c_clean = patched_in[j + 1] - patched_in[j], clean_in[j + 1] - clean_in[j]
            for b in range(2):
                want_change = np.mean(
                    [float((c_patched[b, t] - c_clean[b, t]).norm() / c_clean[b, t].norm()) for t in range(1, 8)]
                )
                assert got["matrix"][i][j][b] == pytest.approx(want_change, rel=1e-3, abs=1e-5), (i, j)
    for i in range(L - 1):
        _, logits = manual_stream(lm, ids, layer_order(L, swap=i))
        want = next_token_metrics(ref, logits)
        for m in ("delta_ce", "kl", "top1"):
            assert np.allclose(got["swap"][m][i], want[m].numpy(), atol=1e-4), (family, "swap", i, m)
    assert max(max(v) for v in got["skip"]["kl"]) > 1e-3, "skipping a layer must change a random model"


def run_embedding(lm, ids):
    from reference import block_kwargs

    out, _ = block_kwargs(lm, ids)
    return out.hidden_states[0]


def test_skipping_summary_and_finding():
    lm = tiny_model("llama")
    parts = [skipping_batch(lm, random_ids(2, 6, seed=s)) for s in (1, 2)]
    summary = summarize_skipping(join_batches(parts), n_boot=50)
    assert [r["layer"] for r in summary["skip"]] == [0, 1, 2] and len(summary["swap"]) == 2
    assert summary["matrix"][0][0] is None and summary["matrix"][0][1] > 0
    effect = summary["finding"]["mean_later_change_per_skipped_layer"]
    assert effect[-1] is None and effect[0] == pytest.approx(np.mean(summary["matrix"][0][1:]))

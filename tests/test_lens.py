"""The logit lens against a block-by-block forward and hand-computed metrics, on tiny models of every family."""

import json

import numpy as np
import pytest
import torch
from reference import _readout, manual_stream
from tiny_models import FAMILIES, random_ids, tiny_model

from steerscope.core.hooks import capture, run_forward
from steerscope.depth.lens import lens, lens_batch, lens_logits, lens_reference, lens_scores, lens_sites


@pytest.mark.parametrize("family", FAMILIES)
def test_last_layer_lens_equals_the_logits(family):
    lm = tiny_model(family)
    ids = random_ids(2, 7)
    with torch.no_grad():
        logits = run_forward(lm, ids).logits
    last = capture(lm, ids, [lens_sites(lm)[-1]])[lens_sites(lm)[-1]]
    with torch.no_grad():
        torch.testing.assert_close(lens_logits(lm, lm.n_layers - 1, last), logits, atol=1e-5, rtol=1e-5)
    got = lens_batch(lm, ids)
    assert np.allclose(got["kl"][-1], 0.0, atol=1e-5)
    assert got["top1"][-1] == [1.0, 1.0] and got["top5"][-1] == [1.0, 1.0]
    assert np.allclose(got["ce"][-1], got["model_ce"][0], atol=1e-5)
    assert max(got["kl"][0]) > 1e-3, "the first layer's lens must differ from the model on a random model"


@pytest.mark.parametrize("family", ["llama", "gpt2", "gpt_neox", "gemma2", "gemma3"])
def test_lens_matches_block_by_block_forward_and_hand_metrics(family):
    lm = tiny_model(family)
    ids = random_ids(3, 8, seed=4)
    after, logits = manual_stream(lm, ids)
    got = lens_batch(lm, ids)
    for n, h in enumerate(after):
        z = _readout(lm, h)[:, 1:]
        with torch.no_grad():
            fast = lens_logits(lm, n, capture(lm, ids, [f"resid_post.{n}"])[f"resid_post.{n}"])
        torch.testing.assert_close(fast, _readout(lm, h), atol=1e-5, rtol=1e-5)
        for b in range(3):
            p = torch.softmax(logits[b, 1:].double(), -1)
            q = torch.softmax(z[b].double(), -1)
            kl = np.mean([float((p[t] * (p[t] / q[t]).log()).sum()) for t in range(7)])
            top1 = np.mean([float(p[t].argmax() == q[t].argmax()) for t in range(7)])
            top5 = np.mean(
                [len(set(p[t].topk(5).indices.tolist()) & set(q[t].topk(5).indices.tolist())) / 5 for t in range(7)]
            )
            ce = np.mean([-float(q[t, ids[b, t + 2]].log()) for t in range(6)])  # positions 1..T-2
            assert abs(got["kl"][n][b] - kl) < 1e-4, (n, b)
            assert got["top1"][n][b] == pytest.approx(top1)
            assert got["top5"][n][b] == pytest.approx(top5)
            assert abs(got["ce"][n][b] - ce) < 1e-4


def test_final_soft_cap_is_applied():
    lm = tiny_model("gemma2")
    assert lm.config.final_logit_softcapping, "the tiny Gemma 2 must have a soft cap for this test"
    ids = random_ids(1, 6)
    h = capture(lm, ids, ["resid_post.0"])["resid_post.0"]
    with torch.no_grad():
        z = lens_logits(lm, 0, h)
    assert z.abs().max() <= lm.config.final_logit_softcapping


def test_translator_is_applied_and_metrics_shapes():
    lm = tiny_model("llama")
    ids = random_ids(2, 6)
    seen = []

    def twice(layer, h):
        seen.append(layer)
        return 2 * h

    got = lens_batch(lm, ids, translator=twice)
    assert seen == list(range(lm.n_layers))
    plain = lens_batch(lm, ids)
    assert got["kl"][0] != plain["kl"][0]
    summary = lens(lm, [ids, random_ids(2, 6, seed=3)], n_boot=50)
    assert [r["layer"] for r in summary["per_layer"]] == list(range(lm.n_layers))
    row = summary["per_layer"][0]
    assert row["kl_ci"][0] <= row["kl"] <= row["kl_ci"][1]
    json.dumps(summary)


def test_lens_scores_refuse_mismatched_shapes():
    with pytest.raises(ValueError, match="differ"):
        lens_scores(lens_reference(torch.zeros(1, 3, 10), torch.zeros(1, 2, dtype=torch.long)), torch.zeros(1, 3, 11))

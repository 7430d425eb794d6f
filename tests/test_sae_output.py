"""Output-based SAE latent selection (after Arad et al.): the output scores against a slow one-text-at-a-time
computation on a tiny model, and `by="output"` in sae_add / sae_clamp keeping the AUROC candidate whose output
effect best matches the concept's."""

import pytest
import torch
from sweep_fixtures import one_thread  # noqa: F401  (fixture)
from test_sae import SITE, _random_sae
from tiny_models import tiny_model

from steerscope.core.hooks import add
from steerscope.methods import fit
from steerscope.sae.features import rank_latents, text_latents
from steerscope.sae.output_score import CANDIDATES, output_scores
from steerscope.steering.pairs import ContrastPair


def _slow_mean_logprobs(lm, texts, vector=None):
    rows = []
    for text in texts:  # one text at a time, no padding, the full logits
        ids = torch.tensor([lm.tokenizer(text)["input_ids"]])
        if vector is None:
            logits = lm.model(ids).logits[0, -1]
        else:
            with add(lm, {SITE: vector}, positions="all"):
                logits = lm.model(ids).logits[0, -1]
        rows.append(torch.log_softmax(logits.double(), -1))
    return torch.stack(rows).mean(0)


@pytest.fixture(scope="module")
def lm():
    return tiny_model("llama", tokenizer=True)


def test_output_scores_equal_a_slow_computation(lm):
    sae = _random_sae(d_in=lm.d_model)
    pairs = [ContrastPair(f"w90 w{i} w{i + 2} w5", f"w91 w{i} w{i + 2}") for i in range(5)]
    got = output_scores(lm, sae, pairs, [0, 3, 7], norm=2.5, batch_size=2)
    with torch.no_grad():
        neg = _slow_mean_logprobs(lm, [p.negative for p in pairs])
        concept = _slow_mean_logprobs(lm, [p.positive for p in pairs]) - neg
        for latent in (0, 3, 7):
            d = sae.W_dec[latent].detach().float()
            steered = _slow_mean_logprobs(lm, [p.negative for p in pairs], d / d.norm() * 2.5)
            want = float((steered - neg) @ concept / ((steered - neg).norm() * concept.norm()))
            assert got[latent] == pytest.approx(want, abs=1e-5)


@pytest.mark.parametrize("method", ["sae_add", "sae_clamp"])
def test_choosing_by_output_keeps_the_best_scoring_candidate(lm, method):
    sae = _random_sae(d_in=lm.d_model, d_sae=64)
    pairs = [ContrastPair(f"w90 w{i} w{i + 2}", f"w91 w{i} w{i + 2}") for i in range(6)]
    fitted = fit(method, lm, pairs, [SITE], sae=sae, by="output")
    scores = {int(k): v for k, v in fitted.meta["output_scores"].items()}
    pos = text_latents(lm, sae, [p.positive for p in pairs])
    neg = text_latents(lm, sae, [p.negative for p in pairs])
    candidates = [r["latent"] for r in rank_latents(pos, neg, "auroc", top=CANDIDATES)["positive"]]
    assert sorted(scores) == sorted(candidates)
    assert fitted.meta["latent"] == max(scores, key=scores.get) and fitted.meta["chosen_by"] == "output"
    by_auroc = fit(method, lm, pairs, [SITE], sae=sae)
    assert by_auroc.meta["latent"] == candidates[0] and "output_scores" not in by_auroc.meta
    with pytest.raises(ValueError, match="by must be one of auroc, mean_diff, output"):
        fit(method, lm, pairs, [SITE], sae=sae, by="loss")

"""Metric functions on hand-made inputs with known answers, and against direct loop computations."""

import json
import math

import numpy as np
import pytest
import torch
from sweep_fixtures import one_thread  # noqa: F401  (fixture)
from tiny_models import tiny_model

from steerscope.core.endpoint import ChatEndpoint
from steerscope.evaluate.behaviour import ABItem, ab_probability, behaviour_curve, behaviour_probability, read_ab_items
from steerscope.evaluate.fluency import SideEffectProbe, completion_cross_entropy
from steerscope.evaluate.judge import parse_rating
from steerscope.evaluate.scorers import keyword_hits, share_positive, topic_similarity
from steerscope.evaluate.stats import bootstrap_two_level_ci
from steerscope.steering.vector import SteeringVector


@pytest.fixture(scope="module")
def lm():
    return tiny_model("llama", tokenizer=True)


def test_ab_probability_from_hand_set_logits():
    logits = torch.full((3, 10), -5.0)
    logits[0, 2], logits[0, 3] = 1.0, 1.0  # equal -> 0.5
    logits[1, 2], logits[1, 3] = math.log(3.0), 0.0  # 3:1 -> 0.75
    logits[2, 4], logits[2, 2] = 2.0, 0.0  # matching is id 2 with logit 0 vs 2 -> 1 / (1 + e^2)
    p = ab_probability(logits, torch.tensor([2, 2, 2]), torch.tensor([3, 3, 4]))
    np.testing.assert_allclose(p, [0.5, 0.75, 1 / (1 + math.e**2)], rtol=1e-7)  # float32 logits


def test_behaviour_probability_matches_a_direct_softmax(lm, tmp_path):
    # the tiny tokenizer's words are w0..w93; letters are spelled as words so each is one token
    rows = [
        {"question": "w5 w6 w7 (A) (B)", "answer_matching_behavior": "(A)", "answer_not_matching_behavior": "(B)"},
        {"question": "w8 w9 (A) (B)", "answer_matching_behavior": "B", "answer_not_matching_behavior": "A"},
    ]
    path = tmp_path / "ab.json"
    path.write_text(json.dumps(rows))
    items = read_ab_items(path)
    assert items[0] == ABItem("w5 w6 w7 (A) (B)", "A", "B") and items[1].matching == "B"
    tiny = [ABItem("w5 w6 w7", "w10", "w11"), ABItem("w8 w9", "w12", "w10")]  # one-token letters for this tokenizer
    got = behaviour_probability(lm, tiny, batch_size=1)
    for item, p in zip(tiny, got, strict=True):
        ids = torch.tensor([lm.tokenizer(item.prompt)["input_ids"]])
        with torch.no_grad():
            logits = lm.model(ids).logits[0, -1].double()
        a, b = (lm.tokenizer.convert_tokens_to_ids(w) for w in (item.matching, item.not_matching))
        expected = torch.softmax(torch.stack([logits[a], logits[b]]), 0)[0]
        assert p == pytest.approx(float(expected), abs=1e-6)
    vec = SteeringVector({"resid_pre.1": torch.randn(lm.d_model) * 3})
    curve = behaviour_curve(lm, tiny, vec, [0.0, 2.0])
    np.testing.assert_allclose(curve[0.0], got, atol=1e-6)
    assert not np.allclose(curve[2.0], got), "the vector must move the answer probabilities"


def test_keyword_rate_on_literal_strings():
    texts = ["The WEDDING was lovely", "they married in May", "a bedding store", "wed", "no topic here"]
    assert keyword_hits(texts, ["wedding", "marri*"]) == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert keyword_hits(["weddings"], ["wedding"]) == [0.0] and keyword_hits(["weddings"], ["wedding*"]) == [1.0]
    with pytest.raises(ValueError, match="keyword"):
        keyword_hits(texts, [])


def test_topic_similarity_with_packaged_minilm():
    from steerscope.evaluate.embeddings import embed

    vectors = embed(["a wedding", "a wedding", "tax law"])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] == pytest.approx(1.0, abs=1e-5)
    on, off = topic_similarity(["The bride and groom said their vows.", "The tax rate rose again."], "weddings")
    assert on > off + 0.2


def test_share_positive_uses_vader_cutoff():
    assert share_positive(["I love this, it is wonderful.", "This is terrible and I hate it.", "The box."]) == 1 / 3


def test_completion_cross_entropy_equals_a_token_by_token_loop(lm):
    prompts = ["w3 w4 w5", "w6", "w7 w8"]
    completions = [" w9 w10", " w11 w12 w13 w14", ""]
    got = completion_cross_entropy(lm, prompts, completions, batch_size=2)
    for p, c, value in zip(prompts[:2], completions[:2], got[:2], strict=True):
        ids = lm.tokenizer(p + c)["input_ids"]
        n_prompt = len(lm.tokenizer(p)["input_ids"])
        nll = []
        for t in range(n_prompt, len(ids)):  # each completion token given everything before it, unbatched
            with torch.no_grad():
                logits = lm.model(torch.tensor([ids[:t]])).logits[0, -1]
            nll.append(-torch.log_softmax(logits.double(), -1)[ids[t]].item())
        assert value == pytest.approx(np.mean(nll), abs=1e-5)
    assert np.isnan(got[2]), "an empty completion has no tokens to score"


def test_side_effects_are_zero_without_an_intervention_and_positive_with_one(lm, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("\n\n".join(" ".join(f"w{(i * 7 + j) % 90 + 2}" for j in range(30)) for i in range(4)))
    probe = SideEffectProbe.prepare(lm, str(text), n=4, seq_len=20, batch_size=3)
    from contextlib import nullcontext

    none = probe.measure(nullcontext)
    np.testing.assert_allclose(none["delta_ce"], 0, atol=1e-6)
    np.testing.assert_allclose(none["kl"], 0, atol=1e-6)
    vec = SteeringVector({"resid_pre.1": torch.randn(lm.d_model) * 5})
    some = probe.measure(lambda: vec.apply(lm, 1.0))
    assert some["kl"].shape == (4,) and (some["kl"] > 0).all()


def test_two_level_bootstrap_brackets_the_grand_mean_and_widens_with_seed_spread():
    rng = np.random.default_rng(0)
    tight = rng.normal(0.5, 0.1, size=(3, 40))
    spread = tight + np.array([[-0.3], [0.0], [0.3]])
    lo, hi = bootstrap_two_level_ci(tight)
    assert lo < tight.mean() < hi
    lo2, hi2 = bootstrap_two_level_ci(spread)
    assert hi2 - lo2 > 2 * (hi - lo)
    with_nan = tight.copy()
    with_nan[0, 0] = np.nan
    assert np.isfinite(bootstrap_two_level_ci(with_nan)).all()


def test_judge_reads_the_last_rating_and_needs_the_environment(monkeypatch):
    assert parse_rating("Mostly fluent. Rating: [[2]]") == 2.0
    assert parse_rating("first [[0]] then [[ 1 ]]") == 1.0
    assert math.isnan(parse_rating("no rating"))
    monkeypatch.delenv("STEERSCOPE_LLM_URL", raising=False)
    with pytest.raises(ValueError, match="STEERSCOPE_LLM_URL"):
        ChatEndpoint.from_env("the LLM judge")

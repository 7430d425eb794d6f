"""Refusal-direction candidates, scores and selection, each against an independent computation."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import CONFIGS, _scale_up_weights, tiny_model
from transformers import AutoModelForCausalLM

from steerscope.core.weights import orthogonalize
from steerscope.refusal.direction import (
    Candidate,
    SelectionRule,
    candidate_directions,
    last_logits,
    last_position_kl,
    n_scored,
    post_instruction_tokens,
    refusal_scores,
    select_direction,
    split_validation,
)
from steerscope.steering.vector import SteeringVector

HARMFUL = ["w3 w4 w5 w6 w7", "w3 w9 w10", "w3 w4 w11 w12 w13 w14 w15", "w3 w20 w21 w22"]
HARMLESS = ["w30 w31 w32", "w30 w33 w34 w35 w36 w37", "w30 w40", "w30 w41 w42 w43 w44"]


def _hidden_states_alone(lm, text):
    ids = lm.tokenize([text])["input_ids"]
    with torch.no_grad():
        return lm.model(ids, output_hidden_states=True).hidden_states  # [l] = input of layer l


def test_candidates_equal_mean_differences_of_prompts_run_one_by_one():
    lm = tiny_model("llama", tokenizer=True)
    n_pos = 2
    got = candidate_directions(lm, HARMFUL, HARMLESS, n_pos, batch_size=3)  # left-padded, uneven batches
    expected = torch.zeros(n_pos, lm.n_layers, lm.d_model, dtype=torch.float64)
    for texts, sign in ((HARMFUL, 1.0), (HARMLESS, -1.0)):
        for text in texts:
            hs = _hidden_states_alone(lm, text)
            for layer in range(lm.n_layers):
                expected[:, layer] += sign * hs[layer][0, -n_pos:].double() / len(texts)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_refusal_score_is_log_odds_of_the_refusal_tokens():
    logits = torch.tensor([[2.0, 0.0, -1.0, 0.5], [0.0, 0.0, 0.0, 0.0]])
    z = logits.double().numpy()
    p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    refuse = p[:, [0, 3]].sum(-1)
    expected = np.log(refuse) - np.log(1 - refuse)
    np.testing.assert_allclose(refusal_scores(logits, [0, 3]).numpy(), expected, rtol=1e-10)
    assert refusal_scores(logits, [0, 3])[1] == pytest.approx(0.0, abs=1e-12)  # half the mass: even odds


def test_last_position_kl_matches_torch():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 11, generator=g), torch.randn(3, 11, generator=g)
    expected = torch.nn.functional.kl_div(
        torch.log_softmax(b.double(), -1), torch.log_softmax(a.double(), -1), log_target=True, reduction="none"
    ).sum(-1)
    torch.testing.assert_close(last_position_kl(a, b), expected)
    assert torch.all(last_position_kl(a, a) < 1e-12)


def test_post_instruction_tokens_follow_the_chat_template():
    lm = tiny_model("llama", tokenizer=True)
    lm.tokenizer.chat_template = "{% for m in messages %}w1 {{ m['content'] }} w2 w3{% endfor %}"
    assert post_instruction_tokens(lm) == lm.tokenizer("w2 w3", add_special_tokens=False)["input_ids"]
    lm.tokenizer.chat_template = None  # fallback "text\n": the word-level tokenizer drops the newline
    with pytest.raises(ValueError, match="no token after the instruction"):
        post_instruction_tokens(lm)


def test_split_validation():
    fit, val = split_validation(list("abcdef"), 2)
    assert fit == list("abcd") and val == list("ef")
    with pytest.raises(ValueError, match="n_val must be"):
        split_validation(list("ab"), 2)


def _select(lm, directions, on_candidate=None, scored=None, **rule):
    return select_direction(
        lm, directions, HARMFUL, HARMLESS, SelectionRule(**rule), batch_size=3, on_candidate=on_candidate, scored=scored
    )


def test_selection_applies_the_rule_and_scores_match_baked_weights(monkeypatch):
    lm = tiny_model("llama", tokenizer=True)
    monkeypatch.setattr("steerscope.refusal.direction.refusal_token_ids", lambda lm: [5, 7])
    directions = torch.randn(2, lm.n_layers, lm.d_model, generator=torch.Generator().manual_seed(3)).double()
    sel = _select(lm, directions, kl_max=math.inf, induce_min=-math.inf, max_layer_frac=0.5)
    cut = [c for c in sel.candidates if c.layer >= 0.5 * lm.n_layers]
    assert cut and all(c.status == "excluded: last layers" and c.bypass is None for c in cut)
    scored = [c for c in sel.candidates if c.bypass is not None]
    assert len(scored) == n_scored(2, lm.n_layers, 0.5)
    assert sel.chosen is min(scored, key=lambda c: c.bypass) and sel.chosen.status == "chosen"
    # The bypass score of the chosen direction, recomputed on a model with the direction removed from its weights.
    r = directions[sel.chosen.position + 2, sel.chosen.layer].float()
    edited = tiny_model("llama", tokenizer=True)
    orthogonalize(edited, r)
    independent = refusal_scores(last_logits(edited, HARMFUL, batch_size=1), [5, 7]).mean()
    assert sel.chosen.bypass == pytest.approx(float(independent), abs=1e-4)
    # Thresholds: a KL limit below every candidate's KL leaves nothing to choose.
    strict = _select(lm, directions, kl_max=min(c.kl for c in scored) / 2, induce_min=-math.inf, max_layer_frac=0.5)
    assert strict.chosen is None
    assert all(c.status.startswith(("filtered", "excluded", "not swept")) for c in strict.candidates)
    high = _select(lm, directions, kl_max=math.inf, induce_min=max(c.induce for c in scored), max_layer_frac=0.5)
    assert high.chosen is None


def test_selection_resumes_from_scored_candidates(monkeypatch):
    lm = tiny_model("llama", tokenizer=True)
    monkeypatch.setattr("steerscope.refusal.direction.refusal_token_ids", lambda lm: [5])
    directions = torch.randn(1, lm.n_layers, lm.d_model, generator=torch.Generator().manual_seed(4)).double()
    seen: list[Candidate] = []
    full = _select(lm, directions, kl_max=math.inf, induce_min=-math.inf, max_layer_frac=1.0, on_candidate=seen.append)
    assert len(seen) == lm.n_layers
    done = {(c.position, c.layer): c for c in seen[:-1]}
    again: list[Candidate] = []
    resumed = _select(
        lm,
        directions,
        kl_max=math.inf,
        induce_min=-math.inf,
        max_layer_frac=1.0,
        on_candidate=again.append,
        scored=done,
    )
    assert [c.layer for c in again] == [seen[-1].layer]  # only the missing candidate is computed
    assert [(c.bypass, c.kl, c.induce, c.status) for c in resumed.candidates] == [
        (c.bypass, c.kl, c.induce, c.status) for c in full.candidates
    ]


def _tiny_with_real_tokenizer(folder: Path):
    """A tiny random llama that uses the default model's tokenizer (so the built-in instructions tokenize)."""
    from steerscope import load_model

    tok = load_model("default").tokenizer
    config = CONFIGS["llama"]()
    config.vocab_size, config.pad_token_id = len(tok), tok.pad_token_id
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    _scale_up_weights(model)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)


@pytest.mark.embedded
def test_refusal_run_end_to_end_and_cli_errors(tmp_path):
    from typer.testing import CliRunner

    from steerscope.cli import app
    from steerscope.refusal.run import RefusalRun, run_refusal

    _tiny_with_real_tokenizer(tmp_path / "tiny")
    run = RefusalRun(
        model=str(tmp_path / "tiny"),
        out=tmp_path / "out",
        n_val=8,
        kl_max=math.inf,
        induce_min=-math.inf,
        max_new_tokens=3,
        text_n=4,
        text_len=32,
    )
    folder, summary = run_refusal(run)
    names = {p.name for p in folder.iterdir()}
    assert {"direction.safetensors", "candidates.csv", "summary.json", "index.html", "model"} <= names
    assert not (tmp_path / "out.partial").exists()
    vec = SteeringVector.load(folder / "direction.safetensors")
    assert vec.sites == [f"resid_pre.{summary['chosen']['layer']}"]
    assert vec.meta["norms"][vec.sites[0]] == pytest.approx(summary["chosen"]["norm"], rel=1e-5)
    # The exported weights behave like inference-time ablation on the Wikipedia text.
    text = summary["text"]
    assert text["exported"]["delta_ce"]["mean"] == pytest.approx(text["ablation"]["delta_ce"]["mean"], abs=1e-4)
    assert text["exported"]["kl"]["mean"] == pytest.approx(text["ablation"]["kl"]["mean"], abs=1e-4)
    rates = json.loads((folder / "summary.json").read_text())["refusal"]
    assert set(rates) == {
        "harmful", "harmful_ablated", "harmless", "harmless_added", "harmless_ablated",
        "harmful_exported", "harmless_exported",
    }  # fmt: skip
    assert all(r["n"] == 48 for r in rates.values())
    with pytest.raises(FileExistsError, match="already exists"):
        run_refusal(run)
    # With the published thresholds a random model has no candidate that induces refusal: a clear error.
    result = CliRunner().invoke(app, ["refusal", str(tmp_path / "tiny"), "--out", str(tmp_path / "strict"),
                                      "--n-val", "8", "--max-new-tokens", "2"])  # fmt: skip
    assert result.exit_code == 2 and "no candidate passed" in result.output


def test_thinned_sweep_scores_only_the_asked_layers_and_positions(monkeypatch):
    lm = tiny_model("llama", tokenizer=True)
    monkeypatch.setattr("steerscope.refusal.direction.refusal_token_ids", lambda lm: [5])
    directions = torch.randn(3, lm.n_layers, lm.d_model, generator=torch.Generator().manual_seed(5)).double()
    sel = _select(lm, directions, kl_max=math.inf, induce_min=-math.inf, max_layer_frac=1.0, layer_step=2,
                  last_positions=1)  # fmt: skip
    scored = {(c.position, c.layer) for c in sel.candidates if c.bypass is not None}
    assert scored == {(-1, layer) for layer in range(0, lm.n_layers, 2)}
    assert len(scored) == n_scored(3, lm.n_layers, 1.0, layer_step=2, last_positions=1)
    with pytest.raises(ValueError, match="last_positions"):
        _select(lm, directions, last_positions=4)


def test_baseline_induce_rule_compares_with_the_harmless_score(monkeypatch):
    lm = tiny_model("llama", tokenizer=True)
    monkeypatch.setattr("steerscope.refusal.direction.refusal_token_ids", lambda lm: [5])
    directions = torch.randn(1, lm.n_layers, lm.d_model, generator=torch.Generator().manual_seed(6)).double()
    sel = _select(lm, directions, kl_max=math.inf, induce_min="baseline", max_layer_frac=1.0)
    harmless = sel.baseline["harmless_refusal_score"]
    assert sel.rule["induce_min"] == harmless
    for c in sel.candidates:
        if c.bypass is not None:
            lowers = c.bypass < sel.baseline["harmful_refusal_score"]
            assert (c.status in ("passed", "chosen")) == (c.induce > harmless and lowers)
    with pytest.raises(ValueError, match="'baseline'"):
        _select(lm, directions, induce_min="above")

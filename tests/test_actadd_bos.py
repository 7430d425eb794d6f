"""ActAdd's BOS handling against a slow manual computation: the pair read after a BOS (the tokenizer's own or a
stand-in), row 0 zero, and position 0 of the user's prompt never changed, with and without a BOS."""

import pytest
import torch
from sweep_fixtures import one_thread  # noqa: F401  (fixture)
from tiny_models import tiny_model, tiny_tokenizer
from tokenizers import processors

from steerscope import ContrastPair, fit
from steerscope.steering.methods import bos_stand_in

SITE, LAYER = "resid_pre.1", 1
PAIR = ContrastPair("w5 w6 w7", "w9")
UNK = 1  # the tiny tokenizer's eos token, its BOS stand-in (it has no BOS and no <|endoftext|>)


def _with_bos(lm):
    """The same tiny model with a tokenizer that puts w0 (id 2) in front of every text, as Gemma's adds <bos>."""
    tok = tiny_tokenizer()
    tok._tokenizer.post_processor = processors.TemplateProcessing(single="w0 $A", special_tokens=[("w0", 2)])
    tok.bos_token, tok.padding_side = "w0", "left"
    lm.tokenizer = tok
    return lm


@pytest.fixture
def plain():
    return tiny_model("llama", tokenizer=True)


def _resid(lm, ids):
    """resid_pre.LAYER by our own pre-hook (no steerscope hook code)."""
    seen = {}
    handle = lm.model.model.layers[LAYER].register_forward_pre_hook(
        lambda m, args, kwargs: seen.__setitem__("h", (args[0] if args else kwargs["hidden_states"]).clone()),
        with_kwargs=True,
    )
    try:
        with torch.no_grad():
            lm.model(torch.tensor([ids]))
    finally:
        handle.remove()
    return seen["h"][0]


def _slow_logits(lm, ids, rows, coefficient):
    """Logits with coefficient * rows[i] added at position i >= 1 of `ids` by our own pre-hook."""

    def pre(module, args, kwargs):
        h = (args[0] if args else kwargs["hidden_states"]).clone()
        n = min(len(rows), h.shape[1])
        h[0, 1:n] += coefficient * rows[1:n]
        return ((h, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": h})

    handle = lm.model.model.layers[LAYER].register_forward_pre_hook(pre, with_kwargs=True)
    try:
        with torch.no_grad():
            return lm.model(torch.tensor([ids])).logits[0]
    finally:
        handle.remove()


def _expected_rows(lm, front):
    """The pair's position-wise difference read after `front`, the shorter padded with w3 (id 5); row 0 zero."""
    pos, neg = [front, 7, 8, 9], [front, 11, 5, 5]
    rows = _resid(lm, pos) - _resid(lm, neg)
    assert rows[0].abs().max() == 0  # the same token at position 0 of both: exactly zero before we set it
    return rows


@pytest.mark.parametrize("has_bos", [False, True])
def test_actadd_reads_after_a_bos_and_never_steers_position_0(plain, has_bos):
    lm = _with_bos(plain) if has_bos else plain
    front = 2 if has_bos else UNK
    assert bos_stand_in(lm.tokenizer) == (None if has_bos else UNK)
    vec = fit("actadd", lm, [PAIR], [SITE], pad_token="w3")
    rows = _expected_rows(lm, front)
    torch.testing.assert_close(vec.vectors[SITE], rows, atol=1e-5, rtol=0)
    assert vec.meta["options"]["pair_tokens"][0][0] == ("w0" if has_bos else "[UNK]")
    # applied to prompts of unequal length in one left-padded batch: each equals the slow one-prompt computation
    texts = ["w20 w21 w22 w23 w24 w25", "w30 w31"]
    batch = lm.tokenize(texts)
    with torch.no_grad(), vec.apply(lm, coefficient=3.0):
        got = lm.model(**batch).logits
    with torch.no_grad():
        clean = lm.model(**batch).logits
    for row, text in enumerate(texts):
        ids = lm.tokenizer(text)["input_ids"]
        slow = _slow_logits(lm, ids, rows, 3.0)
        torch.testing.assert_close(got[row, -len(ids) :], slow, atol=2e-4, rtol=1e-4)
        # position 0 (the BOS, or the first token when there is none) sees nothing of the vector
        torch.testing.assert_close(got[row, -len(ids)], clean[row, -len(ids)], atol=0, rtol=0)
    assert not torch.allclose(got, clean, atol=1e-3)


def test_actadd_bos_tokenizer_reads_the_pair_as_tokenized(plain):
    vec = fit("actadd", plain, [PAIR], [SITE], pad_token="w3", bos="tokenizer")
    rows = _resid(plain, [7, 8, 9]) - _resid(plain, [11, 5, 5])
    torch.testing.assert_close(vec.vectors[SITE], rows, atol=1e-5, rtol=0)
    assert vec.meta["options"]["bos_token_id"] is None
    named = fit("actadd", plain, [PAIR], [SITE], pad_token="w3", bos="w40")
    torch.testing.assert_close(named.vectors[SITE], _expected_rows(plain, 42), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="'w999' is not one token of this vocabulary; pass bos="):
        fit("actadd", plain, [PAIR], [SITE], pad_token="w3", bos="w999")


@pytest.mark.embedded
def test_weddings_vector_on_the_default_model_which_adds_no_bos():
    from steerscope import load_model
    from steerscope.core.generate import generate_text
    from steerscope.evaluate.scorers import keyword_hits
    from steerscope.steering.tasks import ACTADD_WEDDING_WORDS

    lm = load_model("default")
    site = "resid_pre.16"
    ids = torch.tensor([lm.tokenizer("The meeting this morning was")["input_ids"]])
    norms = _norms(lm, ids, site)
    assert norms[0] > 20 * norms[1:].max(), "SmolLM2's position 0 is a massive-norm outlier"
    vec = fit("actadd", lm, [ContrastPair(" weddings", " ")], [site])
    assert vec.meta["options"]["pair_tokens"] == (["<|endoftext|>", "Ġweddings"], ["<|endoftext|>", "Ġ"])
    assert vec.vectors[site][0].abs().max() == 0
    naive = fit("actadd", lm, [ContrastPair(" weddings", " ")], [site], bos="tokenizer")
    prompts = ["The meeting this morning was"]
    texts = {}
    for name, v in (("auto", vec), ("tokenizer", naive)):
        with v.apply(lm, coefficient=4.0):
            texts[name] = generate_text(lm, prompts, max_new_tokens=16, repetition_penalty=1.3)
    assert keyword_hits(texts["auto"], ACTADD_WEDDING_WORDS) == [1.0], texts["auto"]
    assert keyword_hits(texts["tokenizer"], ACTADD_WEDDING_WORDS) == [0.0], texts["tokenizer"]


def _norms(lm, ids, site):
    from steerscope import capture

    return capture(lm, ids, [site])[site][0].norm(dim=-1)

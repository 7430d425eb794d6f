"""Positions stay right under left padding, unequal lengths and KV-cached generation."""

import pytest
import torch
from tiny_models import VOCAB, tiny_model

from steerscope import add
from steerscope.core.hooks import run_forward

NEW = 4


def _batch(lengths=(6, 3, 4), seed=2):
    """Left-padded batch of unequal lengths (pad id 0) and the unpadded rows."""
    g = torch.Generator().manual_seed(seed)
    rows = [torch.randint(1, VOCAB, (n,), generator=g) for n in lengths]
    width = max(lengths)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = r
        mask[i, width - len(r) :] = 1
    return ids, mask, rows


def _generate(lm, ids, mask):
    with torch.no_grad():
        out = lm.model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=NEW,
            do_sample=False,
            pad_token_id=0,
            output_logits=True,
            return_dict_in_generate=True,
        )
    return out.sequences, torch.stack(out.logits, dim=1)


def _recompute(lm, seqs, mask, vectors, positions_for):
    """No cache: run the whole sequence again for every new token, with an explicit column mask."""
    logits = []
    width = mask.shape[1]
    for step in range(NEW):
        cols = width + step
        full_mask = torch.cat([mask, torch.ones(len(seqs), step, dtype=mask.dtype)], dim=1)
        with torch.no_grad(), add(lm, vectors, positions=positions_for(full_mask, width)):
            out = run_forward(lm, {"input_ids": seqs[:, :cols], "attention_mask": full_mask})
        logits.append(out.logits[:, -1])
    return torch.stack(logits, dim=1)


def _all(full_mask, width):
    return full_mask.bool()


def _prompt(full_mask, width):
    m = full_mask.bool().clone()
    m[:, width:] = False
    return m


def _last_prompt(full_mask, width):
    m = torch.zeros_like(full_mask, dtype=torch.bool)
    m[:, width - 1] = True
    return m


def _generated(full_mask, width):
    m = torch.zeros_like(full_mask, dtype=torch.bool)
    m[:, width:] = True
    return m


@pytest.mark.parametrize("family", ["llama", "gpt2", "gpt_neox", "gemma3"])
@pytest.mark.parametrize(
    ("spec", "as_mask"),
    [("all", _all), ("prompt", _prompt), ("last_prompt", _last_prompt), ("generated", _generated)],
)
def test_cached_generation_equals_recomputation(family, spec, as_mask):
    lm = tiny_model(family)
    ids, mask, _ = _batch()
    vectors = {"resid_pre.1": torch.randn(lm.d_model) * 3}
    with add(lm, vectors, positions=spec):
        seqs, cached = _generate(lm, ids, mask)
    plain_seqs, _ = _generate(lm, ids, mask)
    assert not torch.equal(seqs, plain_seqs) or spec == "generated"
    recomputed = _recompute(lm, seqs, mask, vectors, as_mask)
    torch.testing.assert_close(cached, recomputed, atol=1e-4, rtol=0)


@pytest.mark.parametrize("family", ["llama", "gpt2", "gemma2"])
@pytest.mark.parametrize("spec", ["all", "front", "last_prompt", "generated"])
def test_left_padding_matches_each_row_alone(family, spec):
    lm = tiny_model(family)
    ids, mask, rows = _batch()
    vec = torch.randn(2, lm.d_model) * 3 if spec == "front" else torch.randn(lm.d_model) * 3
    with add(lm, {"resid_post.0": vec}, positions=spec):
        batch_seqs, batch_logits = _generate(lm, ids, mask)
        for i, row in enumerate(rows):
            alone_seqs, alone_logits = _generate(lm, row[None], torch.ones(1, len(row), dtype=torch.long))
            torch.testing.assert_close(batch_logits[i], alone_logits[0], atol=1e-4, rtol=0)
            assert torch.equal(batch_seqs[i, -NEW:], alone_seqs[0, -NEW:])


def test_front_adds_row_i_at_real_token_i():
    lm = tiny_model("llama")
    ids, mask, rows = _batch()
    vec = torch.randn(2, lm.d_model)
    from steerscope import capture

    clean = capture(lm, {"input_ids": ids, "attention_mask": mask}, ["resid_pre.1"])["resid_pre.1"]
    with add(lm, {"resid_pre.1": vec}, positions="front"):
        got = capture(lm, {"input_ids": ids, "attention_mask": mask}, ["resid_pre.1"])["resid_pre.1"]
    expected = clean.clone()
    width = ids.shape[1]
    for i, row in enumerate(rows):
        start = width - len(row)
        expected[i, start] += vec[0]
        expected[i, start + 1] += vec[1]
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


def test_positionwise_vector_only_with_front():
    lm = tiny_model("llama")
    with (
        pytest.raises(ValueError, match="expected \\[32\\]"),
        add(lm, {"resid_pre.1": torch.zeros(2, 32)}, positions="last_prompt"),
    ):
        pass

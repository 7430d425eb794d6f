"""The tuned lens: identity start equals the logit lens, training lowers the KL, files round-trip and are checked."""

import numpy as np
import pytest
import torch
from tiny_models import random_ids, tiny_model

from steerscope.depth.lens import lens_batch
from steerscope.depth.tuned_lens import TunedLens, TunedLensFileError, train_tuned_lens, tuned_lens_loss


@pytest.mark.parametrize("family", ["llama", "gpt2", "gpt_neox", "gemma2"])
def test_identity_tuned_lens_equals_the_logit_lens(family):
    lm = tiny_model(family)
    ids = random_ids(2, 7)
    tuned = lens_batch(lm, ids, translator=TunedLens(lm.n_layers, lm.d_model))
    plain = lens_batch(lm, ids)
    for m in plain:
        assert np.allclose(tuned[m], plain[m], atol=1e-6), m


def test_training_lowers_the_kl_and_the_file_round_trips(tmp_path):
    torch.manual_seed(0)
    lm = tiny_model("llama")
    batches = [random_ids(4, 12, seed=s) for s in range(4)]
    held_out = random_ids(4, 12, seed=9)
    identity = TunedLens(lm.n_layers, lm.d_model)
    before = [tuned_lens_loss(lm, identity, ids).item() for ids in (batches[0], held_out)]
    lens = train_tuned_lens(lm, batches, 60, tmp_path / "state.safetensors", lr=1e-2, show_progress=False)
    with torch.no_grad():
        after = [tuned_lens_loss(lm, lens, ids).item() for ids in (batches[0], held_out)]
    assert after[0] < 0.5 * before[0] and after[1] < before[1], (before, after)
    assert lens.meta["tokens"] == 60 * 4 * 11 and lens.meta["seconds"] > 0
    assert lens.weight[-1].abs().max() == 0 and lens.bias[-1].abs().max() == 0, "the last layer stays the model"
    assert lens.weight[0].abs().max() > 0
    assert not any(p.grad is not None for p in lm.model.parameters()), "the model must stay frozen"
    assert all(p.requires_grad for p in lm.model.parameters()), "requires_grad is restored"
    path = lens.save(tmp_path / "lens.safetensors")
    back = TunedLens.load(path, lm)
    torch.testing.assert_close(back.weight, lens.weight)
    assert back.meta["fingerprint"] == lm.fingerprint()
    with pytest.raises(TunedLensFileError, match="trained on"):
        TunedLens.load(path, tiny_model("llama", seed=1))
    deeper = TunedLens(lm.n_layers + 1, lm.d_model).save(tmp_path / "deeper.safetensors")
    with pytest.raises(TunedLensFileError, match="layers of width"):
        TunedLens.load(deeper, lm)
    (tmp_path / "bad.safetensors").write_bytes(b"not a lens")
    with pytest.raises(TunedLensFileError, match="cannot read"):
        TunedLens.load(tmp_path / "bad.safetensors")

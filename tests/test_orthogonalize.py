"""Weight orthogonalization equals inference-time directional ablation, and exports a loadable folder."""

import pytest
import torch
from tiny_models import CONFIGS, FAMILIES, random_ids, save_tiny, tiny_model
from transformers import AutoModelForCausalLM

from steerscope import LoadedModel, capture, load_model, project_out
from steerscope.core.hooks import run_forward
from steerscope.core.weights import OrthogonalizationError, export, orthogonalize

EXACT = [f for f in FAMILIES if f not in ("gemma2", "gemma3")]


def _direction(lm, seed=7):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(lm.d_model, generator=g)


def _logits(lm, ids):
    with torch.no_grad():
        return run_forward(lm, ids).logits


@pytest.mark.parametrize("family", EXACT)
def test_orthogonalized_weights_equal_inference_time_ablation(family):
    lm = tiny_model(family)
    ids, d = random_ids(), _direction(lm)
    with project_out(lm, d):
        ablated = _logits(lm, ids)
    clean = _logits(lm, ids)
    orthogonalize(lm, d)
    edited = _logits(lm, ids)
    assert (edited - ablated).abs().max() < 1e-4
    assert (edited - clean).abs().max() > 1e-2, "the edit must change the model"
    unit = d / d.norm()
    acts = capture(lm, ids, lm.site_names())
    for name, act in acts.items():
        assert (act @ unit).abs().max() < 1e-4, name


def test_tied_embeddings_are_untied_and_export_round_trips(tmp_path):
    torch.manual_seed(0)
    config = CONFIGS["llama"]()
    config.tie_word_embeddings = True
    model = AutoModelForCausalLM.from_config(config).eval()
    lm = LoadedModel.from_hf(model)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    ids, d = random_ids(), _direction(lm)
    with project_out(lm, d):
        ablated = _logits(lm, ids)
    record = orthogonalize(lm, d)
    assert record["untied_embeddings"] is True
    torch.testing.assert_close(_logits(lm, ids), ablated, atol=1e-4, rtol=0)
    out = export(lm, tmp_path / "edited", record)
    reloaded = AutoModelForCausalLM.from_pretrained(out).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).logits, ablated, atol=1e-4, rtol=0)
    assert (out / "steerscope_orthogonalization.json").is_file()
    with pytest.raises(FileExistsError, match="overwrite"):
        export(lm, out, record)


def test_folder_model_export_loads_with_steerscope(tmp_path):
    save_tiny(tmp_path / "tiny", "gpt2")
    lm = load_model(str(tmp_path / "tiny"))
    ids, d = random_ids(), _direction(lm)
    with project_out(lm, d):
        ablated = _logits(lm, ids)
    out = export(lm, tmp_path / "edited", orthogonalize(lm, d))
    back = load_model(str(out))
    torch.testing.assert_close(_logits(back, ids), ablated, atol=1e-4, rtol=0)


@pytest.mark.parametrize("family", ["gemma2", "gemma3"])
def test_sandwich_norm_families_are_refused(family):
    lm = tiny_model(family)
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    with pytest.raises(OrthogonalizationError, match="sandwich norms"):
        orthogonalize(lm, _direction(lm))
    assert all(torch.equal(before[k], v) for k, v in lm.model.state_dict().items()), "nothing may change"


def test_bad_directions():
    lm = tiny_model("llama")
    with pytest.raises(ValueError, match="expected \\[32\\]"):
        orthogonalize(lm, torch.ones(31))
    with pytest.raises(ValueError, match="non-zero"):
        orthogonalize(lm, torch.zeros(32))


def test_orthogonalize_cli(tmp_path):
    from typer.testing import CliRunner

    from steerscope.cli import app
    from steerscope.steering.vector import SteeringVector

    save_tiny(tmp_path / "tiny", "llama")
    lm = load_model(str(tmp_path / "tiny"))
    d = _direction(lm)
    SteeringVector({"resid_pre.1": d}, {"fingerprint": lm.fingerprint(), "method": "mean_diff"}).save(tmp_path / "d.st")
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "orthogonalize",
            str(tmp_path / "tiny"),
            "--direction",
            str(tmp_path / "d.st"),
            "--out",
            str(tmp_path / "edited"),
        ],
    )
    assert result.exit_code == 0, result.output
    ids = random_ids()
    with project_out(lm, d):
        ablated = _logits(lm, ids)
    torch.testing.assert_close(_logits(load_model(str(tmp_path / "edited")), ids), ablated, atol=1e-4, rtol=0)
    again = runner.invoke(
        app,
        [
            "orthogonalize",
            str(tmp_path / "tiny"),
            "--direction",
            str(tmp_path / "d.st"),
            "--out",
            str(tmp_path / "edited"),
        ],
    )
    assert again.exit_code == 2 and "exists" in again.output
    save_tiny(tmp_path / "g2", "gemma2")
    refused = runner.invoke(
        app,
        [
            "orthogonalize",
            str(tmp_path / "g2"),
            "--direction",
            str(tmp_path / "d.st"),
            "--out",
            str(tmp_path / "g2-edited"),
            "--allow-other-model",
        ],
    )
    assert refused.exit_code == 2 and "sandwich" in " ".join(refused.output.split())
    assert not (tmp_path / "g2-edited").exists()

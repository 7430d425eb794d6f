"""Slower tests on the embedded default model (SmolLM2-135M-Instruct). Select with -m embedded."""

import pytest
import torch
from typer.testing import CliRunner

from steerscope import capture, load_model
from steerscope.cli import app
from steerscope.core.generate import generate_text
from steerscope.steering.methods import mean_diff
from steerscope.steering.pairs import starter_pairs

pytestmark = pytest.mark.embedded


@pytest.fixture(scope="module")
def lm():
    return load_model("default")


def test_default_model_shape_and_sites(lm):
    assert (lm.adapter.family, lm.n_layers, lm.d_model) == ("llama", 30, 576)
    assert lm.tokenizer.padding_side == "left"
    batch = lm.tokenize(["The capital of France is", "Hello"])
    with torch.no_grad():
        out = lm.model(**batch, output_hidden_states=True)
    acts = capture(lm, batch, ["resid_post.14", "resid_pre.3"])
    torch.testing.assert_close(acts["resid_post.14"], out.hidden_states[15], atol=1e-4, rtol=0)
    torch.testing.assert_close(acts["resid_pre.3"], out.hidden_states[3], atol=1e-4, rtol=0)


def test_sentiment_vector_steers_generation(lm):
    site = "resid_pre.10"
    vector = mean_diff(lm, starter_pairs("sentiment"), [site])
    assert vector.meta["norms"][site] > 1 and vector.meta["fingerprint"] == lm.fingerprint()
    prompts = ["My opinion of the new restaurant is that"]
    plain = generate_text(lm, prompts, max_new_tokens=12)
    with vector.apply(lm, coefficient=4.0):
        steered = generate_text(lm, prompts, max_new_tokens=12)
    with vector.apply(lm, coefficient=0.0):
        zero = generate_text(lm, prompts, max_new_tokens=12)
    assert steered != plain
    assert zero == plain


def test_info_command(lm):
    result = CliRunner().invoke(app, ["info", "default"])
    assert result.exit_code == 0, result.output
    assert "llama" in result.output and "576" in result.output and "resid_pre" in result.output


def test_readme_tour_runs(lm, tmp_path, monkeypatch):
    import re
    from pathlib import Path

    import steerscope

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    tour = readme.split("## Five-minute tour", 1)[1]
    code = re.search(r"```python\n(.*?)```", tour, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(steerscope, "load_model", lambda spec: lm)  # the module fixture's model, loaded once
    namespace = {"texts": ["One sentence.", "Another, longer sentence here."]}
    exec(compile(code, "README.md", "exec"), namespace)
    assert (tmp_path / "sent.safetensors").is_file()
    assert namespace["acts"]["resid_pre.10"].shape[-1] == 576 and namespace["out"].shape[0] == 2


def test_capability_tasks_on_the_default_model(lm):
    """The clean model copies random sequences far above chance and recalls some title words; a random-weight
    model of the same config copies at chance."""
    from steerscope.core.models import LoadedModel
    from steerscope.depth.capability import accuracy, cloze_task, induction_task

    task = induction_task(lm, 8, seed=0)
    with torch.no_grad():
        clean = float(accuracy(lm.model(input_ids=task.ids).logits, task).mean())
    assert clean > 0.5 and task.chance < 1e-4  # measured 0.61 on 16 sequences: copying, but not perfect
    cloze = cloze_task(lm, 24, seed=0)
    with torch.no_grad():
        recall = float(accuracy(lm.model(input_ids=cloze.ids).logits, cloze).mean())
    assert recall > 0.1  # measured 0.33 on 48 items
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    random_model = AutoModelForCausalLM.from_config(lm.config).eval()
    random_lm = LoadedModel.from_hf(random_model, lm.tokenizer, name="random")
    with torch.no_grad():
        chance = float(accuracy(random_lm.model(input_ids=task.ids).logits, task).mean())
    assert chance < 0.01

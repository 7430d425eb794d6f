"""`steerscope serve --engine vllm`: the OpenAI-compatible API generating through vLLM, with the same vector files
and request body, token for token equal to the Hugging Face engine (fp32, greedy, the default model).
Runs where vLLM is installed (`make test` runs it in .venv-vllm)."""

from __future__ import annotations

import openai
import pytest

from steerscope import fit, load_model
from steerscope.core.generate import chat_prompt, generate_completions, generate_text
from steerscope.serve import Background, Playground, create_app
from steerscope.steering.pairs import load_pairs

pytest.importorskip("vllm", reason="vLLM is not installed here; `make test` runs this file in .venv-vllm")
from steerscope.vllm import VllmEngine  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPT = "The meeting this morning was"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vectors")
    lm = load_model("default")
    fit("mean_diff", lm, load_pairs("sentiment")[:16], ["resid_pre.10"]).save(folder / "sent.safetensors")
    with VllmEngine("default", max_model_len=1024) as engine:
        app = create_app(Playground(lm, "default", folder), vllm=engine)
        with Background(app) as url:
            yield lm, folder, openai.OpenAI(base_url=url + "v1", api_key="none", max_retries=0)


def test_vllm_completions_and_chat_equal_the_hf_library(served):
    lm, folder, client = served
    from steerscope.steering.vector import SteeringVector

    vector = SteeringVector.load(folder / "sent.safetensors")
    steering = {"steering": [{"vector": "sent.safetensors", "coefficient": 4.0}]}
    got = client.completions.create(model="default", prompt=PROMPT, max_tokens=16, temperature=0, extra_body=steering)
    with vector.apply(lm, 4.0):
        want = generate_text(lm, [PROMPT], max_new_tokens=16)[0]
    assert got.choices[0].text == want and got.usage.completion_tokens == 16
    assert client.models.list().data[0].model_extra["engine"] == "vllm"

    messages = [{"role": "user", "content": "Describe your morning in one sentence."}]
    chat = client.chat.completions.create(
        model="default", messages=messages, max_tokens=40, temperature=0, extra_body=steering
    )
    with vector.apply(lm, 4.0):
        reference = generate_completions(lm, [chat_prompt(lm, messages)], max_new_tokens=40)[0]
    assert chat.choices[0].message.content == reference.text
    assert chat.choices[0].finish_reason == reference.finish_reason

    stream = client.completions.create(
        model="default", prompt=PROMPT, max_tokens=16, temperature=0, stream=True, extra_body=steering
    )
    assert "".join(c.choices[0].text for c in stream if c.choices) == want


def test_vllm_refusals_are_the_same(served):
    _, _, client = served
    with pytest.raises(openai.BadRequestError, match="coefficient"):
        client.completions.create(
            model="default", prompt=PROMPT, max_tokens=4,
            extra_body={"steering": [{"vector": "sent.safetensors", "coefficient": 1e30}]},
        )

"""The OpenAI-compatible API of `steerscope serve`, through the official `openai` client against a real server on
127.0.0.1: every answer is checked against the library (`generate_text` under `apply`), which runs without the
server, its queue or its streams."""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time

import httpx
import openai
import pytest
from serve_helpers import byte_tokenizer, save_byte_model
from typer.testing import CliRunner

from steerscope import load_model
from steerscope.cli import app as cli
from steerscope.core.generate import generate_completions, generate_text
from steerscope.methods import fit
from steerscope.serve import Background, Limits, Playground, create_app
from steerscope.steering.pairs import load_pairs

pytestmark = pytest.mark.usefixtures("one_thread")

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
PROMPT = "I think that"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """The byte model, with a chat template so /v1/chat/completions has one to apply."""
    path = save_byte_model(tmp_path_factory.mktemp("model") / "bytes")
    tok = byte_tokenizer()
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def lm(folder):
    return load_model(str(folder))


@pytest.fixture(scope="module")
def vectors(tmp_path_factory, lm):
    root = tmp_path_factory.mktemp("vectors")
    pairs = load_pairs("sentiment")
    fit("mean_diff", lm, pairs[:8], ["resid_pre.2"], batch_size=8, seed=0).save(root / "sent.safetensors")
    fit("mean_diff", lm, pairs[8:16], ["resid_post.1"], batch_size=8, seed=0).save(root / "other_site.safetensors")
    other = load_model(str(save_byte_model(tmp_path_factory.mktemp("other") / "m", seed=3)))
    fit("mean_diff", other, pairs[:4], ["resid_pre.1"]).save(root / "wrong_model.safetensors")
    return root


@pytest.fixture(scope="module")
def playground(lm, folder, vectors):
    return Playground(lm, str(folder), vectors, None, Limits(max_prompt_tokens=64, max_new_tokens=24, max_streams=2))


@pytest.fixture(scope="module")
def server(playground):
    with Background(create_app(playground)) as url:
        yield url


@pytest.fixture(scope="module")
def client(server, folder):
    return openai.OpenAI(base_url=server + "v1", api_key="unused", max_retries=0)


def reference(lm, prompt: str, steering: list[tuple[str, float]], vectors, **generation) -> str:
    """What the library gives for the same prompt and settings, with the same vectors applied by hand."""
    from contextlib import ExitStack

    from steerscope.steering.vector import SteeringVector

    with ExitStack() as stack:
        for name, c in steering:
            stack.enter_context(SteeringVector.load(vectors / name).apply(lm, c, "all"))
        return generate_text(lm, [prompt], **generation)[0]


def test_models_and_vectors_list_what_is_served(client, server, folder, lm):
    models = client.models.list()
    assert [m.id for m in models.data] == [str(folder)]
    listing = httpx.get(server + "v1/vectors", timeout=120).json()["data"]
    by_name = {row["name"]: row for row in listing}
    assert by_name["sent.safetensors"]["method"] == "mean_diff" and by_name["sent.safetensors"]["problem"] is None
    assert len(by_name["sent.safetensors"]["sha256"]) == 64
    assert "fingerprint" in by_name["wrong_model.safetensors"]["problem"]


@pytest.mark.parametrize(
    "steering",
    [[], [("sent.safetensors", 0.0)], [("sent.safetensors", 6.0)], [("sent.safetensors", -6.0)],
     [("sent.safetensors", 4.0), ("other_site.safetensors", -3.0)]],
    ids=["none", "zero", "plus", "minus", "two"],
)
def test_greedy_completion_equals_generate_text_under_apply(client, lm, vectors, steering):
    body = [{"vector": n, "coefficient": c, "positions": "all"} for n, c in steering]
    got = client.completions.create(
        model="default", prompt=PROMPT, max_tokens=12, temperature=0, extra_body={"steering": body}
    )
    want = reference(lm, PROMPT, steering, vectors, max_new_tokens=12)
    assert got.choices[0].text == want
    assert got.choices[0].finish_reason == "length"  # the byte model has no end-of-sequence token
    assert got.usage.completion_tokens == 12 and got.usage.prompt_tokens == len(PROMPT)
    provenance = got.model_extra["steerscope"]["steering"]
    assert [(p["vector"], p["coefficient"]) for p in provenance] == steering


def test_steering_changes_the_text(client):
    texts = {
        c: client.completions.create(
            model="default", prompt=PROMPT, max_tokens=12, temperature=0,
            extra_body={"steering": [{"vector": "sent.safetensors", "coefficient": c}]},
        ).choices[0].text
        for c in (0.0, 30.0)
    }
    assert texts[0.0] != texts[30.0]


def test_streaming_deltas_add_up_to_the_same_text(client, lm, vectors):
    steering = [{"vector": "sent.safetensors", "coefficient": 6.0}]
    stream = client.completions.create(
        model="default", prompt=PROMPT, max_tokens=12, temperature=0, stream=True,
        extra_body={"steering": steering},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == reference(lm, PROMPT, [("sent.safetensors", 6.0)], vectors, max_new_tokens=12)
    assert len([c for c in chunks if c.choices and c.choices[0].text]) > 1  # it did stream, token by token
    assert chunks[-1].choices[0].finish_reason == "length"


def test_chat_applies_the_models_template(client, lm, vectors):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "How was it?"}]
    rendered = lm.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    steering = [{"vector": "sent.safetensors", "coefficient": -5.0}]
    got = client.chat.completions.create(
        model="default", messages=messages, max_tokens=10, temperature=0, extra_body={"steering": steering}
    )
    want = reference(lm, rendered, [("sent.safetensors", -5.0)], vectors, max_new_tokens=10)
    assert got.choices[0].message.content == want and got.choices[0].message.role == "assistant"
    stream = client.chat.completions.create(
        model="default", messages=messages, max_tokens=10, temperature=0, stream=True,
        extra_body={"steering": steering}, stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == want
    assert chunks[-1].usage.completion_tokens == 10


def test_sampling_is_seeded_and_equals_the_library(client, lm):
    args = {"model": "default", "prompt": PROMPT, "max_tokens": 10, "temperature": 0.8, "top_p": 0.9}
    a = client.completions.create(seed=7, **args).choices[0].text
    b = client.completions.create(seed=7, **args).choices[0].text
    c = client.completions.create(seed=8, **args).choices[0].text
    want = generate_text(lm, [PROMPT], max_new_tokens=10, do_sample=True, temperature=0.8, top_p=0.9, seed=7)[0]
    assert a == b == want and c != a
    many = client.completions.create(seed=7, n=3, **args)
    assert [ch.index for ch in many.choices] == [0, 1, 2] and len({ch.text for ch in many.choices}) > 1


def test_stop_strings_cut_the_text_and_the_stream(client, lm):
    full = generate_text(lm, [PROMPT], max_new_tokens=16)[0]
    stop = full[5:7]  # a string the unsteered greedy completion is known to contain
    cut = full[: full.find(stop)]
    got = client.completions.create(model="default", prompt=PROMPT, max_tokens=16, temperature=0, stop=[stop])
    assert got.choices[0].text == cut and got.choices[0].finish_reason == "stop"
    want = generate_completions(lm, [PROMPT], max_new_tokens=16, stop=[stop])[0]
    assert got.usage.completion_tokens == want.n_tokens < 16
    stream = client.completions.create(
        model="default", prompt=PROMPT, max_tokens=16, temperature=0, stop=stop, stream=True
    )
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == cut
    assert chunks[-1].choices[0].finish_reason == "stop"


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"steering": [{"vector": "sent.safetensors", "coefficent": 2}]}, 400, "coefficent"),
        ({"steerin": []}, 400, "steerin"),
        ({"steering": [{"vector": "sent.safetensors", "coefficient": math.nan}]}, 400, "finite"),
        ({"steering": [{"vector": "sent.safetensors", "coefficient": 1e30}]}, 400, "between -10000 and 10000"),
        ({"steering": [{"vector": "wrong_model.safetensors", "coefficient": 2}]}, 400, "fingerprint"),
        ({"steering": [{"vector": "missing.safetensors", "coefficient": 2}]}, 404, "missing.safetensors"),
        ({"steering": [{"vector": "sent.safetensors", "coefficient": 2, "positions": "middle"}]}, 400, "positions"),
        ({"max_tokens": 10_000}, 400, "max_tokens"),
        ({"temperature": -1}, 400, "temperature"),
        ({"n": 99}, 400, "n must"),
        ({"frequency_penalty": 0.5}, 400, "frequency_penalty"),
        ({"model": "gpt-4o"}, 400, "gpt-4o"),
        ({"prompt": "x" * 500}, 413, "limit of 64"),
        ({"prompt": ""}, 400, "empty"),
    ],
)
def test_refusals_are_openai_shaped(server, body, status, words):
    payload = {"model": "default", "prompt": PROMPT, "max_tokens": 4, "temperature": 0} | body
    response = httpx.post(server + "v1/completions", content=json.dumps(payload),
                          headers={"Content-Type": "application/json"}, timeout=120)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert words in error["message"] and error["type"] and "\n" not in error["message"]


def test_the_official_client_raises_its_own_errors(client):
    with pytest.raises(openai.BadRequestError, match="coefficient"):
        client.completions.create(
            model="default", prompt=PROMPT, max_tokens=4,
            extra_body={"steering": [{"vector": "sent.safetensors", "coefficient": 1e30}]},
        )
    with pytest.raises(openai.NotFoundError):
        client.completions.create(
            model="default", prompt=PROMPT, max_tokens=4,
            extra_body={"steering": [{"vector": "nope", "coefficient": 1}]},
        )


def test_overload_is_429_and_a_client_that_leaves_frees_its_slot(playground, server, client):
    release = threading.Event()
    loop = asyncio.new_event_loop()
    slots = range(playground.limits.max_streams)
    blockers = [playground.engine.submit(lambda t: release.wait(30), loop) for _ in slots]
    try:
        with pytest.raises(openai.RateLimitError, match="slots"):
            client.completions.create(model="default", prompt=PROMPT, max_tokens=4)
    finally:
        release.set()
    deadline = time.monotonic() + 10
    while playground.engine.status()["streams"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert all(b.state == "done" for b in blockers)
    body = {"model": "default", "prompt": PROMPT, "max_tokens": 24, "temperature": 0, "stream": True}
    with httpx.stream("POST", server + "v1/completions", json=body) as response:
        next(response.iter_lines())  # the first event; then this client goes away
    deadline = time.monotonic() + 10
    while playground.engine.status()["streams"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert playground.engine.status()["streams"] == 0
    loop.close()


def test_an_api_key_is_enforced_on_every_v1_request(lm, folder, vectors):
    playground = Playground(lm, str(folder), vectors)  # its own: an app that stops closes its playground's thread
    with Background(create_app(playground, api_key="s3cret")) as url:
        bad = openai.OpenAI(base_url=url + "v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.models.list()
        assert httpx.get(url + "v1/vectors", timeout=120).status_code == 401
        good = openai.OpenAI(base_url=url + "v1", api_key="s3cret", max_retries=0)
        assert good.completions.create(model="default", prompt=PROMPT, max_tokens=2, temperature=0).choices


def test_serving_off_loopback_needs_a_key(folder):
    result = CliRunner().invoke(cli, ["serve", str(folder), "--host", "0.0.0.0", "--port", "0"], env={})
    assert result.exit_code == 2
    assert "--api-key" in result.output and result.output.count("error:") == 1


@pytest.mark.embedded
def test_default_model_chat_through_the_api_equals_the_library(tmp_path):
    """SmolLM2's own chat template, its end-of-turn token and a sentiment vector, through the official client."""
    lm = load_model("default")
    vector = fit("mean_diff", lm, load_pairs("sentiment")[:16], ["resid_pre.10"])
    vector.save(tmp_path / "sent.safetensors")
    messages = [{"role": "user", "content": "Describe your morning in one sentence."}]
    from steerscope.core.generate import chat_prompt

    prompt = chat_prompt(lm, messages)
    with vector.apply(lm, 4.0):
        want = generate_completions(lm, [prompt], max_new_tokens=40)[0]
    playground = Playground(lm, "default", tmp_path)
    with Background(create_app(playground)) as url:
        client = openai.OpenAI(base_url=url + "v1", api_key="none", max_retries=0)
        got = client.chat.completions.create(
            model="default", messages=messages, max_tokens=40, temperature=0,
            extra_body={"steering": [{"vector": "sent.safetensors", "coefficient": 4.0}]},
        )
    assert got.choices[0].message.content == want.text
    assert got.choices[0].finish_reason == want.finish_reason and got.usage.completion_tokens == want.n_tokens


def test_the_request_guard_fronts_the_api(server):
    """A page on another site cannot use the API: a foreign Host (DNS rebinding), a foreign Origin, or a body not
    declared JSON (a CORS 'simple' request) is refused before any work is queued."""
    body = json.dumps({"model": "default", "prompt": PROMPT, "max_tokens": 2})
    json_type = {"Content-Type": "application/json"}
    plain = {"Content-Type": "text/plain"}
    assert httpx.post(server + "v1/completions", content=body, headers=plain, timeout=120).status_code == 415
    assert httpx.get(server + "v1/vectors", headers={"Host": "evil.example"}, timeout=120).status_code == 403
    origin = {"Origin": "http://evil.example", **json_type}
    assert httpx.post(server + "v1/completions", content=body, headers=origin, timeout=120).status_code == 403
    assert httpx.post(server + "v1/completions", content=body, headers=json_type, timeout=120).status_code == 200

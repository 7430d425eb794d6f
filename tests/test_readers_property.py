"""Property tests (Hypothesis) for every reader of user input: whatever the bytes, a reader either returns what the
file holds or raises steerscope's own error (SteerscopeError) whose one-line message names the file (or the request
part); never another exception. Sizes: EXAMPLES per reader (a few seconds each on a busy 2-core machine)."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save
from tiny_models import tiny_model

from steerscope.core.corpus import load_documents
from steerscope.core.errors import SteerscopeError
from steerscope.core.reading import UserFileError, read_json, read_text
from steerscope.evaluate.behaviour import ABItem, read_ab_items
from steerscope.steering.pairs import ContrastPair, read_pairs
from steerscope.steering.vector import SteeringVector
from steerscope.sweep.config import SweepConfig, load_config

EXAMPLES = 60
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# JSON values, including the shapes the readers look for, so that the valid paths are exercised too
SCALARS = st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False) | st.text(max_size=12)
KEYS = st.sampled_from(["positive", "negative", "question", "answer_matching_behavior",
                        "answer_not_matching_behavior", "text", "split", "x"]) | st.text(max_size=6)  # fmt: skip
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=4),
                      max_leaves=8)  # fmt: skip
PAIR = st.fixed_dictionaries({"positive": st.text(max_size=8), "negative": st.text(max_size=8)})
AB = st.fixed_dictionaries({
    "question": st.sampled_from(["Q? (A) y (B) n", "Q?", "", "(A) (C)"]),
    "answer_matching_behavior": st.sampled_from(["(A)", "B", "(C) c", "Yes", ""]),
    "answer_not_matching_behavior": st.sampled_from(["(B)", "A", "(A)", "no"]),
})  # fmt: skip
ROWS = st.lists(PAIR | AB | VALUES, max_size=4)


def raw_bytes(rows: st.SearchStrategy) -> st.SearchStrategy[bytes]:
    """A file's bytes: JSON of the rows, JSON lines, CSV-ish text, arbitrary text or arbitrary bytes, maybe cut."""
    as_json = rows.map(lambda r: json.dumps(r).encode())
    as_lines = rows.map(lambda r: "\n".join(json.dumps(x) for x in r).encode())
    as_csv = st.lists(st.lists(st.text(max_size=6), max_size=3), max_size=4).map(
        lambda r: b"positive,negative\n" + "\n".join(",".join(c) for c in r).encode()
    )
    whole = as_json | as_lines | as_csv | st.text(max_size=60).map(str.encode) | st.binary(max_size=60)
    return st.tuples(whole, st.integers(0, 80)).map(lambda t: t[0][: t[1]] if t[1] < len(t[0]) else t[0])


def check(reader, suffix: str, data: bytes, ok_type):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"user file{suffix}"
        path.write_bytes(data)
        try:
            got = reader(path)
        except SteerscopeError as exc:
            message = str(exc)
            assert str(path) in message, message
            assert "\n" not in message.strip(), message
            return
        assert all(isinstance(x, ok_type) for x in got), got


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv"])
@SETTINGS
@given(data=raw_bytes(ROWS))
def test_pair_files(suffix, data):
    check(read_pairs, suffix, data, ContrastPair)


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".txt"])
@SETTINGS
@given(data=raw_bytes(st.lists(st.fixed_dictionaries({"text": st.text(max_size=8)}) | VALUES, max_size=4)))
def test_text_files(suffix, data):
    check(lambda path: load_documents(str(path)), suffix, data, str)


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
@SETTINGS
@given(data=raw_bytes(st.lists(AB | VALUES, max_size=4)))
def test_ab_item_files(suffix, data):
    check(read_ab_items, suffix, data, ABItem)


TOML_LINES = st.sampled_from([
    'sites = ["resid_pre.1"]', "coefficients = [4.0]", "n_pairs = [4]", 'models = ["x"]', "coefficients = [nan]",
    "coefficients = []", "n_pairs = [0]", "n_boot = -3", "[generation]", "max_new_tokens = 0", "temperature = nan",
    "do_sample = 3", "[selection]", "max_fluency_cost = inf", "[side_effects]", "n = 0", "[ray]", "workers = -1",
    'device_map = 5', 'datasets = ["nope"]', "[datasets.mine]", 'items = "missing.json"', "seeds = [true]",
    "generation = 3", 'methods = ["mean_diff", "x"]', "random_n_pairs = -2", "batch_size = 0", "seed = -1",
    "repetition_penalty = 0", '"unterminated', "= 1", "[[x]]",
])  # fmt: skip


@pytest.mark.parametrize("suffix", [".toml", ".yaml"])
@SETTINGS
@given(lines=st.lists(TOML_LINES, max_size=8), junk=st.binary(max_size=8))
def test_sweep_configs(suffix, lines, junk):
    text = "\n".join(lines).encode()
    if suffix == ".yaml":
        text = text.replace(b" = ", b": ").replace(b"[generation]", b"generation:")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"my config{suffix}"
        path.write_bytes(text + (junk if junk.startswith(b"\xff") else b""))
        try:
            got = load_config(path)
        except SteerscopeError as exc:
            assert str(path) in str(exc) and "\n" not in str(exc), str(exc)
            return
        assert isinstance(got, SweepConfig)
        assert all(math.isfinite(c) and c > 0 for c in got.coefficients)
        assert got.generation.max_new_tokens >= 1 and got.generation.temperature > 0


TENSORS = st.sampled_from([
    torch.ones(8), torch.ones(3, 8), torch.ones(8, dtype=torch.int32), torch.tensor(1.0), torch.ones(2, 2, 8),
    torch.ones(0), torch.full((8,), float("nan")), torch.ones(8, dtype=torch.float16), torch.ones(4),
])  # fmt: skip
HEADERS = st.none() | st.sampled_from(['{"method": "x"}', "[1]", "{not json", '"text"', "null", "{}"])


@SETTINGS
@given(tensors=st.dictionaries(st.sampled_from(["resid_pre.1", "mlp_out.0", "x"]), TENSORS, max_size=3),
       header=HEADERS, cut=st.integers(0, 400), junk=st.booleans())  # fmt: skip
def test_vector_files_and_their_headers(tensors, header, cut, junk):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "my vector.safetensors"
        meta = {"steerscope": header} if header else None
        data = save({k: v.clone().contiguous() for k, v in tensors.items()}, metadata=meta)
        path.write_bytes(b"\x00garbage" if junk and cut < 20 else data[: max(cut, 8)] if cut < 100 else data)
        try:
            got = SteeringVector.load(path)
        except SteerscopeError as exc:
            assert str(path) in str(exc) and "\n" not in str(exc), str(exc)
            return
        assert all(v.dtype == torch.float32 and v.dim() in (1, 2) and v.numel() for v in got.vectors.values())
        assert len({v.shape[-1] for v in got.vectors.values()}) == 1


@pytest.fixture(scope="module")
def lm():
    return tiny_model("llama", tokenizer=True)


BODY = st.fixed_dictionaries(
    {},
    optional={
        "prompt": st.text(max_size=10) | SCALARS,
        "vector": st.fixed_dictionaries({}, optional={"pairs": st.sampled_from(["sentiment", "nope", "upload:1"])
                                                      | SCALARS, "file": st.text(max_size=6) | SCALARS,
                                                      "n_pairs": st.integers(-2, 400) | SCALARS,
                                                      "method": st.sampled_from(["mean_diff", "actadd", "x"]),
                                                      "site": st.sampled_from(["resid_pre.1", "resid_pre.99", "x"])})
        | SCALARS,
        "coefficients": st.lists(st.floats() | st.integers() | SCALARS, max_size=4) | SCALARS,
        "max_new_tokens": st.integers(-3, 10**6) | SCALARS,
        "seed": st.integers(-3, 2**70) | SCALARS,
        "repetition_penalty": st.floats() | SCALARS,
        "positions": st.sampled_from(["all", "front", "nope"]) | SCALARS,
        "second": st.fixed_dictionaries({"coefficient": st.floats() | SCALARS}) | SCALARS,
    },
)  # fmt: skip


@SETTINGS
@given(body=BODY | VALUES)
def test_playground_request_bodies(lm, body):
    from pydantic import ValidationError

    from steerscope.serve.app import validation_line
    from steerscope.serve.plan import Limits, Plan, SteerRequest, make_plan
    from steerscope.serve.vectors import VectorLibrary

    try:
        request = SteerRequest.model_validate(body)
        plan = make_plan(request, VectorLibrary(lm), Limits(), "tiny", "resid_pre.1", lambda text: len(text.split()))
    except ValidationError as exc:  # the server answers 422 with this one line
        assert validation_line(exc) and "\n" not in validation_line(exc)
        return
    except SteerscopeError as exc:  # 4xx with this one line
        assert str(exc) and "\n" not in str(exc)
        return
    assert isinstance(plan, Plan)


@SETTINGS
@given(data=st.binary(max_size=40) | st.text(max_size=40).map(str.encode))
def test_the_reading_helper_itself(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.json"
        path.write_bytes(data)
        for reader in (read_text, read_json):
            try:
                reader(path, "a JSON file", "fix it")
            except UserFileError as exc:
                assert str(exc).startswith(f"{path}") and "expected a JSON file; fix it" in str(exc), str(exc)


OPENAI_BODY = st.fixed_dictionaries(
    {},
    optional={
        "model": st.sampled_from(["default", "tiny-llama", "gpt-4o"]) | SCALARS,
        "prompt": st.text(max_size=10) | st.lists(st.text(max_size=6) | SCALARS, max_size=3) | SCALARS,
        "messages": st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "tool", "x"]) | SCALARS,
                                                    "content": st.text(max_size=8) | SCALARS}), max_size=3) | SCALARS,
        "max_tokens": st.integers(-3, 10**6) | SCALARS,
        "temperature": st.floats() | SCALARS,
        "top_p": st.floats() | SCALARS,
        "n": st.integers(-2, 20) | SCALARS,
        "seed": st.integers(-3, 2**70) | SCALARS,
        "stop": st.text(max_size=4) | st.lists(st.text(max_size=4), max_size=6) | SCALARS,
        "stream": st.booleans() | SCALARS,
        "frequency_penalty": st.floats() | SCALARS,
        "logprobs": SCALARS,
        "steering": st.lists(st.fixed_dictionaries({"vector": st.sampled_from(["v.safetensors", "../x", "nope"])
                                                    | SCALARS, "coefficient": st.floats() | SCALARS},
                                                   optional={"positions": st.sampled_from(["all", "nope"]) | SCALARS,
                                                             "extra": SCALARS}), max_size=2) | SCALARS,
        "steerin": SCALARS,
    },
)  # fmt: skip


@pytest.fixture(scope="module")
def openai_server(lm, tmp_path_factory):
    from steerscope.methods import fit
    from steerscope.serve import Limits, Playground
    from steerscope.serve.openai_api import OpenAIServer
    from steerscope.steering.pairs import load_pairs

    folder = tmp_path_factory.mktemp("vectors")
    fit("mean_diff", lm, load_pairs("sentiment")[:4], ["resid_pre.1"]).save(folder / "v.safetensors")
    return OpenAIServer(Playground(lm, "default", folder, None, Limits(max_prompt_tokens=32, max_new_tokens=16)))


@SETTINGS
@given(body=OPENAI_BODY | VALUES, chat=st.booleans())
def test_openai_api_request_bodies(openai_server, body, chat):
    """Any body either becomes a checked job or an OpenAI-shaped 4xx refusal with a one-line message."""
    from pydantic import ValidationError

    from steerscope.serve.openai_api import refusal
    from steerscope.serve.openai_schema import ChatBody, CompletionBody

    try:
        if chat:
            parsed = ChatBody.model_validate(body)
            prompts = [openai_server.render_chat(parsed)]
            max_tokens = parsed.max_completion_tokens or parsed.max_tokens
        else:
            parsed = CompletionBody.model_validate(body)
            prompts = [parsed.prompt] if isinstance(parsed.prompt, str) else list(parsed.prompt)
            max_tokens = parsed.max_tokens
        job = openai_server.job(parsed, prompts, max_tokens, 16)
    except (ValidationError, SteerscopeError, ValueError) as exc:
        response = refusal(exc)
        error = json.loads(response.body)["error"]
        assert 400 <= response.status_code < 500 and error["message"] and "\n" not in error["message"]
        return
    assert job.n >= 1 and job.generation["max_new_tokens"] >= 1 and all(job.prompt_tokens)


def test_openai_body_checker_accepts_a_valid_body(openai_server):
    """The property test above reaches the accepted path too: a plain valid body becomes a job."""
    from steerscope.serve.openai_schema import CompletionBody

    body = CompletionBody.model_validate(
        {"model": "default", "prompt": "hello there", "max_tokens": 4, "temperature": 0,
         "steering": [{"vector": "v.safetensors", "coefficient": 2.0}]}
    )  # fmt: skip
    job = openai_server.job(body, ["hello there"], 4, 16)
    assert job.generation["max_new_tokens"] == 4 and [s.name for s in job.steering] == ["v.safetensors"]

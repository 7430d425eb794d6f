"""The playground's web API through FastAPI's test client: every endpoint, and every refusal with its status.

Texts are checked against the library (`steered_completions`, `generate_text` under `apply`, `fit`), which runs
without the server, queue or streams; the reproduce commands are run and give the same vector.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from serve_helpers import save_byte_model, sse_events
from typer.testing import CliRunner

from steerscope import load_model
from steerscope.cli import app as cli
from steerscope.core.generate import generate_text
from steerscope.evaluate.fluency import completion_cross_entropy
from steerscope.evaluate.scorers import sentiment_compound
from steerscope.methods import fit
from steerscope.serve import Limits, Playground, create_app
from steerscope.serve.app import STATIC
from steerscope.serve.vectors import fit_methods
from steerscope.steering.generate import steered_completions
from steerscope.steering.pairs import load_pairs
from steerscope.steering.vector import SteeringVector

pytest_plugins = ["serve_helpers"]  # the fixtures folder (the byte model saved) and lm (loaded)
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models on two shared threads spin and wait

PROMPT = "I think that"
JSON_BODY = {"Content-Type": "application/json"}  # a raw body must say it is JSON (serve.guard)
GEN = {"max_new_tokens": 8, "seed": 0, "repetition_penalty": 1.3}


@pytest.fixture(scope="module")
def vectors(tmp_path_factory, lm, folder):
    """A vectors folder: a good vector, one made for another model, a damaged file, one in a subfolder."""
    root = tmp_path_factory.mktemp("vectors")
    good = fit("mean_diff", lm, load_pairs("sentiment")[:8], ["resid_pre.2"], batch_size=8, seed=0)
    good.meta["dataset"] = "sentiment:train"
    good.save(root / "sent.safetensors")
    (root / "sub").mkdir()
    (2 * good).save(root / "sub" / "double.safetensors")
    other = load_model(str(save_byte_model(tmp_path_factory.mktemp("other") / "m", seed=3)))
    fit("mean_diff", other, load_pairs("sentiment")[:4], ["resid_pre.1"]).save(root / "other.safetensors")
    (root / "broken.safetensors").write_bytes(b"not a safetensors file")
    fit("actadd", lm, load_pairs("sentiment")[:1], ["resid_pre.0"]).save(root / "actadd.safetensors")
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A runs folder: a demo with its report, a norms run inside it, an unfinished run, and a link outside."""
    root = tmp_path_factory.mktemp("runs")
    (root / "demo" / "depth").mkdir(parents=True)
    (root / "demo" / "demo.json").write_text("{}")
    (root / "demo" / "index.html").write_text("<!doctype html><title>demo</title><p>report</p>")
    (root / "demo" / "depth" / "summary.json").write_text(json.dumps({"kind": "norms"}))
    (root / "sweep.partial").mkdir()
    (root / "sweep.partial" / "results.sqlite").write_bytes(b"")
    (root / "notes").mkdir()  # no run in it
    secret = root.parent / "secret.txt"
    secret.write_text("outside")
    (root / "demo" / "link.txt").symlink_to(secret)
    return root


@pytest.fixture(scope="module")
def client(lm, folder, vectors, runs):
    playground = Playground(lm, str(folder), vectors, runs, Limits(max_prompt_tokens=40, max_new_tokens=16))
    with TestClient(create_app(playground)) as c:
        yield c


def steer(client, **body) -> dict:
    """One steering request; returns {"events", "result", "texts" (label -> text)}."""
    response = client.post("/api/steer", json={"prompt": PROMPT, **GEN, **body})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text.splitlines())
    assert events[0]["type"] == "queued" and events[-1]["type"] == "closed"
    assert not [e for e in events if e["type"] == "error"], events
    (result,) = [e["result"] for e in events if e["type"] == "result"]
    return {"events": events, "result": result, "texts": {c["label"]: c["text"] for c in result["columns"]}}


def refused(response, status: int, *needles: str) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail
    for needle in needles:
        assert needle in detail, (needle, detail)
    return detail


# --- the page and its assets ---------------------------------------------------------------------------


def test_the_page_loads_only_its_own_assets(client):
    page = client.get("/")
    assert page.status_code == 200 and "steerscope playground" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert assets and all(a.startswith("/static/") for a in assets), assets
    for asset in assets:
        assert client.get(asset).status_code == 200, asset
    for file in STATIC.iterdir():  # no asset names another host (an SVG's namespace is a name, never fetched)
        text = file.read_text(encoding="utf-8").replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, file.name
    for bad in ("/static/../app.py", "/static/%2e%2e/app.py", "/static/..%2fapp.py", "/static/nothing.js"):
        assert client.get(bad).status_code == 404, bad


def test_info_and_status(client, lm):
    info = client.get("/api/info").json()
    assert info["sites"] == lm.site_names() and info["default_site"] == "resid_pre.1"
    assert [m["name"] for m in info["methods"]] == fit_methods() == ["actadd", "mean_diff", "pca", "probe", "random"]
    assert info["pair_sets"] == ["sentiment", "weddings", "formality"]
    assert info["limits"]["max_new_tokens"] == 16 and info["fingerprint"] == lm.fingerprint()
    status = client.get("/api/status").json()
    assert status["streams"] == 0 and status["max_streams"] == 4


def test_vector_files_are_listed_with_what_is_wrong(client):
    rows = {r["name"]: r for r in client.get("/api/vectors").json()["vectors"]}
    assert set(rows) == {"sent.safetensors", "sub/double.safetensors", "other.safetensors", "broken.safetensors",
                         "actadd.safetensors"}  # fmt: skip
    assert rows["sent.safetensors"]["problem"] is None and rows["sent.safetensors"]["sites"] == ["resid_pre.2"]
    assert "not a readable safetensors file" in rows["broken.safetensors"]["problem"]
    assert "was made for" in rows["other.safetensors"]["problem"]


# --- steering --------------------------------------------------------------------------------------


def test_a_file_vector_streams_the_library_s_completions(client, lm, folder, vectors):
    got = steer(client, vector={"file": "sent.safetensors"}, coefficients=[6.0])
    vec = SteeringVector.load(vectors / "sent.safetensors")
    expected = steered_completions(lm, vec, [PROMPT], [0.0, 6.0], **GEN)
    assert got["texts"] == {"unsteered": expected["unsteered"][0], "+6 x A": expected["+6 x vector"][0]}
    assert got["texts"]["unsteered"] != got["texts"]["+6 x A"]
    tokens = [e for e in got["events"] if e["type"] == "token" and e["column"] == 1]
    assert len(tokens) >= 2 and tokens[-1]["text"] == got["texts"]["+6 x A"]  # it streamed, and ended on the text
    assert [e["column"] for e in got["events"] if e["type"] == "start"] == [1, 0]  # steered first
    assert [e["labels"] for e in got["events"] if e["type"] == "columns"] == [["unsteered", "+6 x A"]]
    for column in got["result"]["columns"]:
        ce = completion_cross_entropy(lm, [PROMPT], [column["text"]])[0]
        assert column["fluency_ce"] == pytest.approx(ce)
        compound = sentiment_compound([column["text"]])[0]  # a sentiment vector: its VADER scores
        assert column["scores"] == {"sentiment": compound, "positive": float(compound >= 0.05)}
    command = got["result"]["reproduce"]["commands"][-1]
    assert command.startswith(f"steerscope generate {shlex.quote(str(folder))} --vector {vectors / 'sent.safetensors'}")


def test_a_fit_equals_the_library_fit_and_its_commands_reproduce_it(client, lm, folder, tmp_path, monkeypatch):
    got = steer(client, vector={"pairs": "sentiment", "n_pairs": 8, "method": "pca"}, coefficients=[5.0])
    vec = fit("pca", lm, load_pairs("sentiment")[:8], ["resid_pre.1"], batch_size=8, seed=0, read="last")
    expected = steered_completions(lm, vec, [PROMPT], [0.0, 5.0], **GEN)
    assert got["texts"]["+5 x A"] == expected["+5 x vector"][0]
    assert got["result"]["vectors"][0]["meta"]["norms"] == vec.meta["norms"]
    extract, generate = (shlex.split(c) for c in got["result"]["reproduce"]["commands"])
    monkeypatch.chdir(tmp_path)
    assert extract[:2] == ["steerscope", "extract"] and generate[:2] == ["steerscope", "generate"]
    ran = CliRunner().invoke(cli, extract[1:])
    assert ran.exit_code == 0, ran.output
    again = SteeringVector.load(tmp_path / "vector_a.safetensors")
    assert torch.equal(again.vectors["resid_pre.1"], vec.vectors["resid_pre.1"])
    ran = CliRunner().invoke(cli, generate[1:])
    assert ran.exit_code == 0, ran.output


def test_a_sweep_gives_one_column_per_coefficient(client, lm, vectors):
    got = steer(client, vector={"file": "sent.safetensors"}, coefficients=[-4.0, 4.0, 8.0])
    vec = SteeringVector.load(vectors / "sent.safetensors")
    expected = steered_completions(lm, vec, [PROMPT], [0.0, -4.0, 4.0, 8.0], **GEN)
    assert list(got["texts"]) == ["unsteered", "-4 x A", "+4 x A", "+8 x A"]
    assert list(got["texts"].values()) == [t[0] for t in expected.values()]


def test_two_vectors_are_both_applied(client, lm, vectors):
    second = {"vector": {"pairs": "formality", "n_pairs": 4, "site": "mlp_out.0"}, "coefficient": -3.0}
    got = steer(client, vector={"file": "sent.safetensors"}, coefficients=[0.0, 4.0], second=second)
    a = SteeringVector.load(vectors / "sent.safetensors")
    b = fit("mean_diff", lm, load_pairs("formality")[:4], ["mlp_out.0"], batch_size=8, seed=0, read="last")
    expected = {}
    for c in (0.0, 4.0):
        with a.apply(lm, c), b.apply(lm, -3.0):
            expected[f"{c:+g} x A -3 x B"] = generate_text(lm, [PROMPT], **GEN)[0]
    assert {k: v for k, v in got["texts"].items() if k != "unsteered"} == expected
    snippet = got["result"]["reproduce"]["python"]
    assert "b.apply(lm, -3.0, 'all')" in snippet and "vector_b.safetensors" in snippet


def test_the_unsteered_column_is_cached_and_sent_first(client):
    body = {"vector": {"file": "sent.safetensors"}, "coefficients": [2.0], "prompt": "w cache me"}
    first, second = steer(client, **body), steer(client, **body)
    assert first["texts"] == second["texts"]
    assert [c["cached"] for c in second["result"]["columns"]] == [True, False]
    assert [e["column"] for e in second["events"] if e["type"] == "start"] == [0, 1]


def test_an_uploaded_pairs_file_is_validated_and_fits(client, lm):
    rows = [{"positive": f"good day {i}", "negative": f"bad day {i}"} for i in range(6)]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    up = client.post("/api/pairs", json={"name": "C:\\data\\mine.jsonl", "text": text})
    assert up.status_code == 200, up.text
    assert up.json()["name"] == "mine.jsonl" and up.json()["n_pairs"] == 6
    got = steer(client, vector={"pairs": up.json()["key"], "n_pairs": 6}, coefficients=[4.0])
    assert got["result"]["vectors"][0]["meta"]["dataset"] == "mine.jsonl:train"
    assert "--pairs mine.jsonl" in got["result"]["reproduce"]["commands"][0]


@pytest.mark.parametrize(
    ("name", "text", "status", "needles"),
    [
        ("mine.jsonl", '{"positive": "a", "negative": "b"}\n{oops\n', 400, ["mine.jsonl:2", "not valid JSON"]),
        ("mine.jsonl", '{"positive": "a", "negative": "a"}\n', 400, ["mine.jsonl:1", "identical"]),
        ("mine.jsonl", '{"positive": "a"}\n', 400, ["expected keys 'positive' and 'negative'"]),
        ("mine.json", "\x80\x04\x95pickle", 400, ["mine.json", "not valid JSON"]),  # never unpickled
        ("mine.csv", "a,b\n1,2\n", 400, ["mine.csv:1", "columns 'positive' and 'negative'"]),
        ("pairs.pkl", "anything", 400, ["unknown format"]),
        ("mine.jsonl", '{"positive": "a", "negative": "b", "split": "test"}\n', 400, ["no pairs in split 'train'"]),
        ("mine.jsonl", "x" * 2_000_001, 413, ["the upload mine.jsonl is over", "limit of 2000000 bytes"]),
        ("mine.jsonl", "x" * 3_000_000, 413, ["the upload is over", "limit of 2064000 bytes"]),
    ],
)
def test_a_bad_upload_is_refused_naming_the_problem(client, name, text, status, needles):
    refused(client.post("/api/pairs", json={"name": name, "text": text}), status, *needles)


@pytest.mark.parametrize(
    "body",
    [b"not json", b'{"name": 1, "text": "x"}', b'["mine.jsonl", "text"]'],
)
def test_a_malformed_upload_body_is_refused(client, body):
    assert client.post("/api/pairs", content=body, headers=JSON_BODY).status_code == 400


FILE = {"file": "sent.safetensors"}


@pytest.mark.parametrize(
    ("body", "status", "needles"),
    [
        ({"prompt": "  "}, 400, ["prompt is empty"]),
        ({"prompt": "x" * 41}, 413, ["41 tokens", "limit of 40", "--max-prompt-tokens"]),
        ({"max_new_tokens": 17}, 400, ["max_new_tokens", "<= 16"]),
        ({"max_new_tokens": 0}, 400, ["max_new_tokens", ">= 1"]),
        ({"seed": -1}, 400, ["seed"]),
        ({"repetition_penalty": 0.0}, 400, ["repetition_penalty"]),
        ({"coefficients": [True]}, 422, ["coefficients.0", "valid number"]),
        ({"coefficients": "4"}, 422, ["coefficients"]),
        ({"coefficients": []}, 400, ["at least one coefficient"]),
        ({"coefficients": list(range(10))}, 400, ["10 coefficients", "limit of 9"]),
        ({"coefficients": [4, 4.0]}, 400, ["given twice"]),
        ({"positions": "middle"}, 400, ["positions must be one of"]),
        ({"colour": "red"}, 422, ["colour", "Extra inputs"]),
        ({"vector": {}}, 400, ["either 'file'", "or 'pairs'"]),
        ({"vector": {"file": "sent.safetensors", "pairs": "sentiment"}}, 400, ["either 'file'"]),
        ({"vector": {"pairs": "jokes"}}, 400, ["unknown pair set 'jokes'"]),
        ({"vector": {"pairs": "upload:123"}}, 400, ["no uploaded pairs"]),
        ({"vector": {"pairs": "sentiment", "method": "sae_clamp"}}, 400, ["cannot be fitted here"]),
        ({"vector": {"pairs": "sentiment", "method": "nope"}}, 400, ["cannot be fitted here", "mean_diff"]),
        ({"vector": {"pairs": "sentiment", "method": "actadd", "n_pairs": 2}}, 400, ["exactly one contrast pair"]),
        ({"vector": {"pairs": "sentiment", "method": "probe", "n_pairs": 1}}, 400, ["at least 2"]),
        ({"vector": {"pairs": "sentiment", "read": "first"}}, 400, ["read"]),
        ({"vector": {"pairs": "sentiment", "site": "resid_pre.9"}}, 400, ["resid_pre.9"]),
        ({"vector": {"pairs": "sentiment", "n_pairs": 0}}, 400, ["n_pairs", ">= 1"]),
        ({"vector": {"pairs": "sentiment", "n_pairs": 9999}}, 400, ["9999 pairs", "sentiment has 320"]),
        ({"vector": {"file": "nothing.safetensors"}}, 404, ["no file"]),
        ({"vector": {"file": "../vectors/sent.safetensors"}}, 404, ["no file"]),
        ({"vector": {"file": "/etc/passwd"}}, 404, ["no file"]),
        ({"vector": {"file": "sub\\..\\sent.safetensors"}}, 404, ["no file"]),
        ({"vector": {"file": "broken.safetensors"}}, 400, ["not a readable safetensors file"]),
        ({"vector": {"file": "other.safetensors"}}, 400, ["was made for", "allow_other_model"]),
        ({"second": {"vector": FILE}}, 422, ["second.coefficient", "Field required"]),
        ({"vector": {"file": "actadd.safetensors"}, "positions": "prompt"}, 400, ["position-wise", "all or front"]),
    ],
)
def test_a_bad_request_is_refused_before_it_is_queued(client, body, status, needles):
    full = {"prompt": PROMPT, "vector": FILE, "coefficients": [4.0], **GEN, **body}
    refused(client.post("/api/steer", json=full), status, *needles)
    assert client.get("/api/status").json()["streams"] == 0


def test_a_problem_found_only_on_the_model_thread_is_an_error_event(client):
    body = {"prompt": PROMPT, **GEN, "coefficients": [2.0], "positions": "generated"}
    body["vector"] = {"pairs": "sentiment", "method": "actadd", "n_pairs": 1}  # its shape is known once fitted
    events = sse_events(client.post("/api/steer", json=body).text.splitlines())
    assert [e["type"] for e in events] == ["queued", "columns", "status", "error", "closed"]
    assert "position-wise (ActAdd) vector" in events[3]["message"]
    body["positions"] = "front"
    assert len(steer(client, **{k: v for k, v in body.items() if k != "prompt"})["texts"]) == 2


def test_nan_and_infinite_coefficients_and_broken_bodies_are_refused(client):
    for raw in ("NaN", "Infinity", "-Infinity"):
        body = f'{{"prompt": "hi", "vector": {{"file": "sent.safetensors"}}, "coefficients": [{raw}]}}'
        refused(client.post("/api/steer", content=body, headers=JSON_BODY), 400, "coefficient", "finite")
    second = '{"prompt": "hi", "vector": {"file": "sent.safetensors"}, "coefficients": [1], "second": '
    second += '{"vector": {"file": "sent.safetensors"}, "coefficient": 1e400}}'
    refused(client.post("/api/steer", content=second, headers=JSON_BODY), 400, "second vector's coefficient", "finite")
    refused(client.post("/api/steer", content=b"{not json", headers=JSON_BODY), 400, "not valid JSON")
    refused(client.post("/api/steer", content=b'"a string"', headers=JSON_BODY), 422, "body")
    refused(client.post("/api/steer", content=b"x" * 70_000, headers=JSON_BODY), 413, "request body")


# --- the results browser ---------------------------------------------------------------------------


def test_runs_are_listed_and_served_sandboxed(client, runs):
    listed = {r["name"]: r for r in client.get("/api/runs").json()["runs"]}
    assert set(listed) == {"demo", "demo/depth"}  # the unfinished sweep and the folder without a run are left out
    assert listed["demo"]["kind"] == "demo" and listed["demo"]["report"] is True
    assert listed["demo/depth"]["kind"] == "norms" and listed["demo/depth"]["report"] is False
    report = client.get("/runs/demo/index.html")
    assert report.status_code == 200 and "<p>report</p>" in report.text
    assert report.headers["content-security-policy"].startswith("sandbox")
    assert client.get("/runs/demo/depth/summary.json").json() == {"kind": "norms"}


@pytest.mark.parametrize(
    "path",
    [
        "/runs/../pyproject.toml",
        "/runs/%2e%2e/secret.txt",
        "/runs/demo/%2e%2e/%2e%2e/secret.txt",
        "/runs/%2Fetc%2Fpasswd",
        "/runs//etc/passwd",
        "/runs/demo/link.txt",  # a link that leads outside the folder
        "/runs/demo",  # a folder, not a file
        "/runs/demo/missing.html",
        "/runs/demo%5C..%5C..%5Csecret.txt",
    ],
)
def test_a_path_outside_the_runs_folder_is_not_found(client, path):
    got = client.get(path)
    assert got.status_code == 404, (path, got.status_code)
    assert "outside" not in got.text


def test_without_folders_nothing_is_listed_or_served(lm, folder):
    with TestClient(create_app(Playground(lm, str(folder)))) as c:
        assert c.get("/api/vectors").json() == {"vectors": []}
        assert c.get("/api/runs").json() == {"runs": []}
        assert c.get("/runs/demo/index.html").status_code == 404
        refused(c.post("/api/steer", json={"prompt": "a", "vector": FILE, "coefficients": [1.0]}), 404)
        info = c.get("/api/info").json()
        assert info["has_vectors"] is False and info["has_runs"] is False


def test_inside_resolves_only_files_in_the_folder(tmp_path):
    """Path helpers on their own: a name inside the folder resolves, '..' and absolute names do not."""
    from steerscope.serve.errors import NotFound
    from steerscope.serve.files import inside

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f.txt").write_text("x")
    assert inside(tmp_path, "a/f.txt") == (tmp_path / "a" / "f.txt").resolve()
    for bad in ("", "a/../a/f.txt", "/a/f.txt", str(tmp_path / "a" / "f.txt"), "a\\f.txt", "a", "a/f.txt\x00"):
        with pytest.raises(NotFound):
            inside(tmp_path, bad)
    with pytest.raises(NotFound):
        inside(None, "a/f.txt")
    assert Path(inside(tmp_path, "./a/f.txt")).name == "f.txt"

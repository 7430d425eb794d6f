"""The playground under load, over real HTTP (uvicorn on 127.0.0.1): concurrent requests never see each other's
hooks, the stream limit answers 429, and a client that disconnects mid-stream frees its slot."""

from __future__ import annotations

import http.client
import json
import threading
import time
from urllib.parse import urlparse

import pytest
from serve_helpers import sse_events

from steerscope.methods import fit
from steerscope.serve import Background, Limits, Playground, create_app
from steerscope.steering.pairs import load_pairs

pytest_plugins = ["serve_helpers"]  # the fixtures folder (the byte model saved) and lm (loaded)
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models on two shared threads spin and wait

PROMPTS = ["I think that", "The weather was", "My friend said"]


@pytest.fixture(scope="module")
def vectors(tmp_path_factory, lm):
    root = tmp_path_factory.mktemp("vectors")
    fit("mean_diff", lm, load_pairs("weddings")[:6], ["resid_post.1"]).save(root / "weddings.safetensors")
    return root


def post(url: str, body: dict, timeout: float = 60) -> tuple[int, list[dict]]:
    """POST a steering request and read its whole stream: (status, events)."""
    where = urlparse(url)
    conn = http.client.HTTPConnection(where.hostname, where.port, timeout=timeout)
    try:
        conn.request("POST", "/api/steer", json.dumps(body), {"Content-Type": "application/json"})
        response = conn.getresponse()
        text = response.read().decode()
        if response.status != 200:
            return response.status, [json.loads(text)]
        return 200, sse_events(text.splitlines())
    finally:
        conn.close()


def open_stream(url: str, body: dict) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    """Start a steering request and leave its stream open: (connection, response)."""
    where = urlparse(url)
    conn = http.client.HTTPConnection(where.hostname, where.port, timeout=30)
    conn.request("POST", "/api/steer", json.dumps(body), {"Content-Type": "application/json"})
    return conn, conn.getresponse()


def read_until_generating(response: http.client.HTTPResponse) -> None:
    while not response.readline().startswith(b'data: {"type": "token"'):
        pass


def get(url: str, path: str) -> dict:
    where = urlparse(url)
    conn = http.client.HTTPConnection(where.hostname, where.port, timeout=10)
    try:
        conn.request("GET", path)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def texts(events: list[dict]) -> dict[str, str]:
    assert not [e for e in events if e["type"] == "error"], events
    (result,) = [e["result"] for e in events if e["type"] == "result"]
    return {c["label"]: c["text"] for c in result["columns"]}


def requests() -> list[dict]:
    """Eight requests with different vectors (fits at three sites, a file, two vectors at once) and coefficients."""
    fits = [
        {"pairs": "sentiment", "n_pairs": 8, "site": "resid_pre.1"},
        {"pairs": "formality", "n_pairs": 8, "site": "mlp_out.2", "method": "pca"},
        {"pairs": "sentiment", "n_pairs": 1, "site": "resid_pre.0", "method": "actadd"},
        {"file": "weddings.safetensors"},
    ]
    out = []
    for i in range(8):
        body = {
            "prompt": PROMPTS[i % 3],
            "vector": fits[i % 4],
            "coefficients": [(-1) ** i * (2.0 + i)] + ([7.0] if i % 3 == 0 else []),
            "max_new_tokens": 24,
            "seed": i,
            "sample": i % 2 == 1,
            "positions": ["all", "generated", "front", "prompt"][i % 4],
        }
        if i == 5:
            body["second"] = {"vector": {"file": "weddings.safetensors"}, "coefficient": 3.0}
        out.append(body)
    return out


def test_eight_concurrent_requests_each_get_what_they_get_alone(lm, folder, vectors):
    playground = Playground(lm, str(folder), vectors, limits=Limits(max_streams=8, max_new_tokens=64))
    bodies = requests()
    with Background(create_app(playground)) as url:
        together: list = [None] * 8
        barrier = threading.Barrier(8)

        def send(i: int) -> None:
            barrier.wait()
            together[i] = post(url, bodies[i])

        threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert all(status == 200 for status, _ in together), together
        peak = playground.engine.peak
        alone = []
        for body in bodies:
            status, events = post(url, body)
            assert status == 200
            alone.append(events)
            assert playground.engine.status()["streams"] == 0  # one at a time now
    print(f"\n8 concurrent requests: {peak} were queued or running at once")
    assert peak >= 4, f"only {peak} requests overlapped; the test did not load the queue"
    for i in range(8):
        assert texts(together[i][1]) == texts(alone[i]), f"request {i} differs when sent with the others"
    steered = [t for _, events in together for label, t in texts(events).items() if label != "unsteered"]
    assert len(set(steered)) == len(steered)  # different vectors and coefficients: different texts
    assert max(e["ahead"] for _, events in together for e in events if e["type"] == "queued") >= 3


LONG = {"prompt": "Once upon a time", "vector": {"pairs": "sentiment", "n_pairs": 4}, "coefficients": [3.0]}
LONG["max_new_tokens"] = 4000  # long enough to be still running when the client leaves


def test_the_stream_limit_answers_429_and_a_client_that_leaves_frees_its_slot(lm, folder):
    playground = Playground(lm, str(folder), limits=Limits(max_streams=1, max_new_tokens=4000))
    long = LONG
    with Background(create_app(playground)) as url:
        conn, response = open_stream(url, long)
        assert response.status == 200
        read_until_generating(response)
        status, (refusal,) = post(url, {**long, "max_new_tokens": 4})
        assert status == 429 and "all 1 stream slots are in use" in refusal["detail"]
        assert get(url, "/api/status")["streams"] == 1
        conn.close()  # the client goes away mid-stream
        deadline = time.monotonic() + 20
        while get(url, "/api/status")["streams"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert get(url, "/api/status")["streams"] == 0, "the slot of a client that left was not freed"
        assert playground.engine.cancelled == 1  # stopped, not run to its 4000 tokens
        status, events = post(url, {**long, "max_new_tokens": 4})
        assert status == 200 and len(texts(events)) == 2


def test_a_client_that_leaves_while_queued_frees_its_slot_at_once(lm, folder):
    playground = Playground(lm, str(folder), limits=Limits(max_streams=2, max_new_tokens=4000))
    long = LONG
    with Background(create_app(playground)) as url:
        running, first = open_stream(url, long)
        read_until_generating(first)
        queued, second = open_stream(url, long)
        assert second.readline().startswith(b'data: {"type": "queued", "ahead": 1}')
        assert get(url, "/api/status")["streams"] == 2
        queued.close()  # leaves while the first one still generates
        deadline = time.monotonic() + 20
        while get(url, "/api/status")["streams"] == 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert get(url, "/api/status")["streams"] == 1 and playground.engine.finished == 0  # the first still runs
        assert playground.engine.cancelled == 1
        running.close()
        while get(url, "/api/status")["streams"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert playground.engine.cancelled == 2 and playground.engine.finished == 1  # the thread skipped the gone one

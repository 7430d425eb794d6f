"""The server's one gate (serve.guard), over real HTTP against uvicorn on 127.0.0.1: a foreign Host (DNS rebinding),
a foreign Origin and a POST not declared JSON (CSRF by a "simple" request) are refused on every route, including
a route added to the app after `create_app` (as the OpenAI-compatible API is), and nothing they ask for runs."""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlparse

import pytest

from steerscope.serve import Background, Limits, Playground, create_app
from steerscope.serve.guard import host_name, is_local_name

pytest_plugins = ["serve_helpers"]  # the fixtures folder (the byte model saved) and lm (loaded)
pytestmark = pytest.mark.usefixtures("one_thread")

STEER = {
    "prompt": "I think that",
    "vector": {"pairs": "sentiment", "n_pairs": 2, "site": "resid_pre.1"},
    "coefficients": [2.0],
    "max_new_tokens": 2,
    "seed": 0,
}
PAIRS = {"name": "mine.jsonl", "text": '{"positive": "I love it", "negative": "I hate it"}\n'}


@pytest.fixture(scope="module")
def server(lm, folder, tmp_path_factory):
    """The playground on a real server, with a route added after create_app (as serve/openai_api.py adds /v1/...);
    yields (url, calls made to that route)."""
    runs = tmp_path_factory.mktemp("runs")
    (runs / "demo").mkdir()
    (runs / "demo" / "demo.json").write_text("{}")
    (runs / "demo" / "index.html").write_text("<p>report</p>")
    app = create_app(Playground(lm, str(folder), None, runs, Limits(max_new_tokens=4)), hosts=("my-box.lan",))
    calls: list[object] = []

    @app.post("/v1/echo")
    async def echo(body: dict):
        calls.append(body)
        return body

    @app.get("/v1/models")
    async def models():
        return {"data": []}

    with Background(app) as url:
        yield url, calls


def call(url: str, method: str, path: str, body: bytes | None = None, **headers: str) -> tuple[int, dict | str]:
    """One request with exactly the headers given (Host defaults to the server's own address)."""
    where = urlparse(url)
    conn = http.client.HTTPConnection(where.hostname, where.port, timeout=60)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        sent = {"Host": f"{where.hostname}:{where.port}", **{k.replace("_", "-"): v for k, v in headers.items()}}
        if body is not None:
            sent["Content-Length"] = str(len(body))
        for key, value in sent.items():
            if value is not None:
                conn.putheader(key, value)
        conn.endheaders(body)
        response = conn.getresponse()
        text = response.read().decode()
        is_json = response.getheader("content-type", "").startswith("application/json")
        return response.status, json.loads(text) if is_json else text
    finally:
        conn.close()


def refused(got: tuple[int, dict | str], status: int, *needles: str) -> None:
    code, body = got
    assert code == status, got
    assert isinstance(body, dict) and "\n" not in body["detail"], body
    for needle in needles:
        assert needle in body["detail"], (needle, body)


def streams(url: str) -> int:
    code, body = call(url, "GET", "/api/status")
    assert code == 200 and isinstance(body, dict)
    return body["streams"]


ROUTES = ["/", "/api/info", "/api/status", "/api/vectors", "/api/runs", "/runs/demo/index.html", "/static/app.js",
          "/v1/models", "/nothing"]  # fmt: skip


NOT_JSON = ["text/plain", "text/plain; charset=utf-8", "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x", None, "application/jsonx"]  # fmt: skip
FOREIGN_ORIGINS = ["http://evil.example", "null", "http://127.0.0.1:1", "https://evil.example:{port}",
                   "http://localhost:{port}", "file://", "http://127.0.0.1:{port}.evil.example"]  # fmt: skip


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.1.evil.example:{port}",
                                  "localhost.evil.example", "[::2]:{port}", "192.168.1.5:{port}", "", "a b",
                                  "127.0.0.1:{port}@evil.example", "127.0.0.1:80x"])  # fmt: skip
def test_a_foreign_host_is_refused_on_every_route(server, host):
    url, _ = server
    port = urlparse(url).port
    for path in ROUTES:
        refused(call(url, "GET", path, Host=host.format(port=port)), 403, "Host", "DNS rebinding", f":{port}/")
    body = json.dumps(STEER).encode()
    refused(call(url, "POST", "/api/steer", body, Host=host.format(port=port), Content_Type="application/json"), 403)
    assert streams(url) == 0


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST:{port}", "app.localhost:{port}",
                                  "127.0.0.1", "[::1]:{port}", "my-box.lan:{port}"])  # fmt: skip
def test_the_server_s_own_address_and_localhost_names_are_served(server, host):
    url, _ = server
    port = urlparse(url).port
    for path in ["/", "/api/info", "/api/runs", "/runs/demo/index.html", "/static/app.js", "/v1/models"]:
        code, _ = call(url, "GET", path, Host=host.format(port=port))
        assert code == 200, (host, path, code)


@pytest.mark.parametrize("path", ["/api/steer", "/api/pairs", "/v1/echo"])
@pytest.mark.parametrize("content_type", NOT_JSON)
def test_a_post_not_declared_json_is_refused_before_it_runs(server, path, content_type):
    url, calls = server
    body = json.dumps(STEER if path == "/api/steer" else PAIRS).encode()
    refused(call(url, "POST", path, body, Content_Type=content_type), 415, "application/json")
    refused(call(url, "PUT", path, body, Content_Type=content_type), 415, "application/json")
    assert streams(url) == 0 and calls == []


@pytest.mark.parametrize("origin", FOREIGN_ORIGINS)
def test_a_foreign_origin_is_refused_even_with_a_json_body(server, origin):
    url, calls = server
    port = urlparse(url).port
    origin = origin.format(port=port)
    for path in ("/api/steer", "/api/pairs", "/v1/echo"):
        body = json.dumps(STEER if path == "/api/steer" else PAIRS).encode()
        refused(call(url, "POST", path, body, Content_Type="application/json", Origin=origin), 403, "another site")
    for path in ("/api/runs", "/api/vectors", "/v1/models"):
        refused(call(url, "GET", path, Origin=origin), 403, "another site")
    refused(call(url, "OPTIONS", "/api/steer", Origin=origin, Access_Control_Request_Method="POST"), 403)
    assert streams(url) == 0 and calls == []


def test_the_page_s_own_requests_and_plain_clients_still_work(server):
    url, calls = server
    where = urlparse(url)
    own = f"http://{where.hostname}:{where.port}"
    body = json.dumps(PAIRS).encode()
    code, got = call(url, "POST", "/api/pairs", body, Content_Type="application/json", Origin=own)
    assert code == 200 and isinstance(got, dict) and got["n_pairs"] == 1, got
    for headers in ({"Origin": own}, {}):  # the page (same origin) and a script or SDK (no Origin)
        code, text = call(url, "POST", "/api/steer", json.dumps(STEER).encode(),
                          Content_Type="application/json; charset=utf-8", **headers)  # fmt: skip
        assert code == 200 and '"type": "result"' in text, text
        code, echoed = call(url, "POST", "/v1/echo", b'{"a": 1}', Content_Type="Application/JSON", **headers)
        assert (code, echoed) == (200, {"a": 1})
    assert len(calls) == 2
    calls.clear()


def test_host_names_are_parsed_strictly():
    assert host_name("127.0.0.1:8765") == "127.0.0.1" and host_name("[::1]:80") == "::1"
    assert host_name("LocalHost") == "localhost" and host_name("my-box.lan:1") == "my-box.lan"
    for bad in ("", "a b", "x:y", "x:1:2", "[::1", "[nope]:1", "a/b", "u@h", ":80", "h:1234567"):
        assert host_name(bad) is None, bad
    assert all(is_local_name(n) for n in ("localhost", "a.localhost", "127.0.0.2", "::1", "[::1]"))
    assert not any(is_local_name(n) for n in ("localhost.evil", "evil-localhost", "10.0.0.1", "::2", ""))

"""Bad model input (issue 19, points 2, 3, 5, 9 and 10's failed endpoint call): a GGUF cache keyed by the whole
file, fingerprints that follow the weights, model folders that would run their own code, output names that
would leave the output folder, and endpoint secrets and failures. Each ends in one clear error (exit 2 and one
`error:` line on the CLI)."""

from __future__ import annotations

import http.server
import json
import os
import socket
import threading
from pathlib import Path

import pytest
import torch
from cli_checks import bad
from tiny_models import save_tiny, tiny_model
from typer.testing import CliRunner

from steerscope import load_model
from steerscope.cli import app
from steerscope.core import loading as models  # the loading half of the old core.models
from steerscope.core.endpoint import ENV_KEY, ENV_MODEL, ENV_URL, ChatEndpoint, EndpointError, redact_url
from steerscope.core.errors import SteerscopeError
from steerscope.core.loading import file_sha256, gguf_cache_key
from steerscope.core.models import ModelLoadError
from steerscope.core.runs import RunFolder, UnsafePathError, slug
from steerscope.evaluate.judge import judge_ratings
from steerscope.steering.synth import EndpointWriter
from steerscope.steering.vector import SteeringVector
from steerscope.sweep.report import file_stem

pytestmark = pytest.mark.usefixtures("one_thread")

KEY = "sk-SECRET-0123456789abcdef"


# ---- 2. the GGUF cache key and the fingerprint ------------------------------------------------------------------


def _twins(tmp_path, where: int, size: int = (1 << 20) + 4096) -> tuple[Path, Path]:
    """Two files of the same name and size whose bytes differ only at offset `where`."""
    data = bytearray(os.urandom(size))
    a, b = tmp_path / "a" / "model.gguf", tmp_path / "b" / "model.gguf"
    for path, byte in ((a, 0), (b, 1)):
        path.parent.mkdir()
        data[where] = byte
        path.write_bytes(bytes(data))
    return a, b


@pytest.mark.parametrize("where", [0, 1 << 20, (1 << 20) + 4095], ids=["first-byte", "after-first-mib", "last-byte"])
def test_gguf_key_differs_for_same_name_and_size(tmp_path, where):
    a, b = _twins(tmp_path, where)
    assert a.name == b.name and a.stat().st_size == b.stat().st_size
    assert gguf_cache_key(a, tmp_path / "idx") != gguf_cache_key(b, tmp_path / "idx")


def test_gguf_hash_is_remembered_by_path_size_and_mtime(tmp_path, monkeypatch):
    path = tmp_path / "m.gguf"
    path.write_bytes(b"gguf" * 1000)
    calls = []
    real = models._sha256_file
    monkeypatch.setattr(models, "_sha256_file", lambda p: calls.append(p) or real(p))
    first = file_sha256(path, tmp_path)
    assert file_sha256(path, tmp_path) == first and len(calls) == 1  # the second call reads the index
    index = json.loads((tmp_path / models.HASH_INDEX).read_text())
    assert index[str(path.resolve())]["sha256"] == first
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched: hashed again
    assert file_sha256(path, tmp_path) == first and len(calls) == 2
    path.write_bytes(b"GGUF" * 1000)  # same size, other bytes, other mtime
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2 * 10**9))
    assert file_sha256(path, tmp_path) != first and len(calls) == 3


@pytest.mark.parametrize("junk", ["not json", "[]", '{"x": 1}', '{"%s": {"size": "big"}}'])
def test_a_broken_hash_index_is_rehashed_not_trusted(tmp_path, junk):
    path = tmp_path / "m.gguf"
    path.write_bytes(b"x" * 100)
    (tmp_path / models.HASH_INDEX).write_text(junk.replace("%s", str(path.resolve())))
    import hashlib

    assert file_sha256(path, tmp_path) == hashlib.sha256(b"x" * 100).hexdigest()


@pytest.mark.parametrize("family", ["llama", "gpt2", "gemma2"])
def test_fingerprint_follows_the_weights(family):
    a, b = tiny_model(family, seed=0), tiny_model(family, seed=1)
    assert a.fingerprint() != b.fingerprint()
    assert a.fingerprint() == tiny_model(family, seed=0).fingerprint() == a.fingerprint()
    c = tiny_model(family, seed=0)
    last = list(c.model.parameters())[-1]
    with torch.no_grad():
        last.view(-1)[-1] += 1e-3  # one number in the last tensor: a strided sample would miss it
    assert c.fingerprint() != a.fingerprint()


# ---- 3. model folders that ship their own code --------------------------------------------------------------------

MARKER_CODE = "import pathlib\npathlib.Path(__file__).with_name('IMPORTED').write_text('ran')\n"


@pytest.fixture(scope="module")
def remote(tmp_path_factory):
    """A tiny saved model whose config.json asks for its own code (an auto_map to a module that leaves a marker)."""
    root = tmp_path_factory.mktemp("remote_code")
    folder = root / "remote"
    save_tiny(folder, "llama")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "evil.py").write_text(MARKER_CODE)
    save_tiny(root / "tiny", "llama")
    SteeringVector({"resid_pre.1": torch.ones(32)}, {"method": "mean_diff"}).save(root / "v1.safetensors")
    return root


def _no_marker(root: Path) -> None:
    assert not (root / "remote" / "IMPORTED").exists()
    assert not any(p.name == "IMPORTED" for p in root.rglob("IMPORTED"))


@pytest.mark.parametrize("spec", ["remote", "remote/", "remote/../remote"])
def test_load_model_refuses_remote_code(remote, spec):
    with pytest.raises(ModelLoadError, match="--trust-remote-code") as info:
        load_model(str(remote / spec))
    assert "auto_map" in str(info.value) and isinstance(info.value, SteerscopeError)
    _no_marker(remote)


@pytest.mark.parametrize(
    "args",
    [
        ["info"],
        ["steer", "--max-new-tokens", "1"],
        ["extract", "--out", "{root}/v.safetensors"],
        ["generate", "--vector", "{root}/v1.safetensors"],
        ["norms", "--out", "{root}/norms"],
        ["horizon", "--out", "{root}/horizon"],
        ["refusal", "--out", "{root}/refusal"],
    ],
    ids=lambda a: a[0],
)
def test_cli_refuses_remote_code(remote, args):
    cmd = [args[0], remote / "remote", *(a.format(root=remote) for a in args[1:])]
    bad(cmd, "--trust-remote-code", "auto_map", str(remote / "remote"))
    _no_marker(remote)
    assert not (remote / "norms").exists() and not (remote / "v.safetensors").exists()


@pytest.mark.parametrize("command", ["info", "steer", "extract", "generate", "norms", "horizon", "refusal"])
def test_trust_remote_code_option_says_what_it_does(command):
    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    text = " ".join(result.output.split())  # help text wraps at the terminal's width
    assert "--trust-remote-code" in text and "only for folders you trust" in text


def test_a_plain_folder_still_loads_without_the_option(remote):
    assert load_model(str(remote / "tiny")).n_layers == 3
    _no_marker(remote)


# ---- 5. output names stay inside the output folder ---------------------------------------------------------------


@pytest.mark.parametrize("spec", ["..", ".", "/", "", "../", "../../etc", "a/../..", "...", "./..", "~", ".hidden"])
def test_slug_is_a_plain_name(spec):
    name = slug(spec)
    assert name and name not in (".", "..") and "/" not in name and not name.startswith(".")


def test_slug_of_a_folder_given_through_dots(tmp_path):
    (tmp_path / "tiny" / "sub").mkdir(parents=True)
    assert slug(str(tmp_path / "tiny" / "sub" / "..")) == "tiny"


@pytest.mark.parametrize(
    "parts", [("..",), ("../x.json",), ("a", "..", "..", "x"), ("/etc/passwd",), ("",), ("a/../../b",)]
)
def test_run_folder_refuses_paths_outside(tmp_path, parts):
    folder = RunFolder(tmp_path / "out")
    with pytest.raises(UnsafePathError, match="refusing the file name"):
        folder.path(*parts)
    assert sorted(p.name for p in tmp_path.iterdir()) in ([], ["out.partial"])


@pytest.mark.parametrize("parts", [("a", "b.json"), ("a/../b.json",), (slug(".."), "norms.json")])
def test_run_folder_allows_paths_inside(tmp_path, parts):
    folder = RunFolder(tmp_path / "out")
    assert folder.path(*parts).resolve().is_relative_to((tmp_path / "out.partial").resolve())


@pytest.mark.parametrize("dataset", ["../../evil", "..", "/etc/passwd", "a/../../b", "sub/dir"])
def test_report_file_stems_stay_in_the_report(tmp_path, dataset):
    stem = file_stem("../model", dataset, "tradeoff")
    assert "/" not in stem and (tmp_path / f"{stem}.png").resolve().parent == tmp_path.resolve()


# ---- 9 and 10. endpoint secrets and failed calls -----------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        f"https://user:{KEY}@api.example.com/v1",
        f"https://{KEY}@api.example.com/v1",
        f"http://user:{KEY}@127.0.0.1:9/v1",
        f"https://api.example.com/v1?api_key={KEY}",
        f"https://api.example.com/v1?x=1&token={KEY}",
    ],
)
def test_redact_url_hides_the_key(url):
    shown = redact_url(url)
    assert KEY not in shown and "***" in shown and "example.com" in shown or "127.0.0.1" in shown


@pytest.mark.parametrize("key", ["", KEY])
def test_endpoint_reprs_hide_the_key(monkeypatch, key):
    monkeypatch.setenv(ENV_URL, f"https://user:{KEY}@api.example.com/v1")
    monkeypatch.setenv(ENV_MODEL, "m")
    monkeypatch.setenv(ENV_KEY, key)
    endpoint = ChatEndpoint.from_env()
    writer = EndpointWriter.from_env()
    for text in (repr(endpoint), str(endpoint), repr(writer)):
        assert KEY not in text and "user:***@api.example.com" in text


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Handler(http.server.BaseHTTPRequestHandler):
    replies: dict[str, tuple[int, bytes]] = {
        "/500/chat/completions": (500, b"internal error"),
        "/html/chat/completions": (200, b"<html>not json</html>"),
        "/empty/chat/completions": (200, b""),
        "/nochoices/chat/completions": (200, b'{"error": "quota"}'),
        "/echo/chat/completions": (401, b""),
    }

    def do_POST(self):  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        status, body = self.replies.get(self.path, (404, b"no such path"))
        if self.path.startswith("/echo"):
            body = f"bad key: {self.headers.get('Authorization')}".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


FAILURES = [
    ("refused", lambda host: f"127.0.0.1:{_closed_port()}", "no answer"),
    ("500", lambda host: f"{host}/500", "HTTP 500"),
    ("html", lambda host: f"{host}/html", "not JSON"),
    ("empty", lambda host: f"{host}/empty", "not JSON"),
    ("nochoices", lambda host: f"{host}/nochoices", "not a chat completion"),
    ("echo", lambda host: f"{host}/echo", "HTTP 401"),
    ("404", lambda host: f"{host}/nowhere", "HTTP 404"),
]


@pytest.mark.parametrize(("name", "where", "cause"), FAILURES, ids=[f[0] for f in FAILURES])
@pytest.mark.parametrize("secret_in", ["url", "env"])
def test_failed_endpoint_call_is_one_clear_error(server, name, where, cause, secret_in):
    netloc = where(server)
    if secret_in == "url":
        endpoint = ChatEndpoint(url=f"http://user:{KEY}@{netloc}", key="", model="m", timeout=5)
    else:
        endpoint = ChatEndpoint(url=f"http://{netloc}", key=KEY, model="m", timeout=5)
    with pytest.raises(EndpointError) as info:
        endpoint.chat("hello")
    text = str(info.value)
    assert cause in text and netloc.split("/")[0] in text and KEY not in text, text
    assert isinstance(info.value, SteerscopeError)


def test_judge_reports_a_failed_call(monkeypatch):
    monkeypatch.setenv(ENV_URL, f"http://user:{KEY}@127.0.0.1:{_closed_port()}/v1")
    monkeypatch.setenv(ENV_MODEL, "m")
    with pytest.raises(EndpointError) as info:
        judge_ratings(["p"], ["t"], "joy")
    assert KEY not in str(info.value) and "user:***@127.0.0.1" in str(info.value)


@pytest.mark.parametrize("secret_in", ["url", "env"])
@pytest.mark.parametrize("kind", ["refused", "500", "html"])
def test_cli_pairs_generate_endpoint_failure(tmp_path, server, kind, secret_in):
    netloc = {"refused": f"127.0.0.1:{_closed_port()}", "500": f"{server}/500", "html": f"{server}/html"}[kind]
    if secret_in == "url":
        env = {ENV_URL: f"http://user:{KEY}@{netloc}", ENV_MODEL: "m", ENV_KEY: ""}
    else:
        env = {ENV_URL: f"http://{netloc}", ENV_MODEL: "m", ENV_KEY: KEY}
    args = ["pairs", "generate", "--concept", "joy", "--n", "1", "--writer", "endpoint", "--out", tmp_path / "p.jsonl"]
    line = bad(args, "127.0.0.1", "chat endpoint", env=env)
    assert KEY not in line and not (tmp_path / "p.jsonl").exists()


@pytest.mark.parametrize("url", ["ftp://host/v1", f"user:{KEY}@host", "127.0.0.1:8080"])
def test_a_url_that_is_not_http_is_refused(monkeypatch, url):
    monkeypatch.setenv(ENV_URL, url)
    monkeypatch.setenv(ENV_MODEL, "m")
    with pytest.raises(EndpointError, match=ENV_URL) as info:
        ChatEndpoint.from_env()
    assert KEY not in str(info.value)

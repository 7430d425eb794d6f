"""Synthetic pair writing: parsing and validation, the endpoint writer against a loopback server."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from typer.testing import CliRunner

from steerscope.cli import app
from steerscope.steering.pairs import ContrastPair, read_pairs
from steerscope.steering.synth import EndpointWriter, generate_pairs, parse_pair


def test_parse_and_validate():
    assert parse_pair("POSITIVE: I adore sunny days.\nNEGATIVE: I loathe sunny days.") == ContrastPair(
        "I adore sunny days.", "I loathe sunny days."
    )
    assert parse_pair("**Positive:** What a great meal!\n**Negative:** What an awful meal!") is not None
    for bad in (
        "POSITIVE: I adore sunny days.",
        "POSITIVE: Same text here.\nNEGATIVE: same text here!",
        "POSITIVE: ok\nNEGATIVE: no",
        "POSITIVE: <first sentence>\nNEGATIVE: <second sentence>",
    ):
        assert parse_pair(bad) is None, bad


def test_generate_pairs_deduplicates_and_stops():
    replies = iter(["POSITIVE: A lovely warm day.\nNEGATIVE: A miserable cold day.", "garbage"] * 50)

    def writer(prompts, seed):
        return [next(replies) for _ in prompts]

    pairs, requests = generate_pairs(writer, "happiness", n=3, batch_size=4, max_requests=12)
    assert pairs == [ContrastPair("A lovely warm day.", "A miserable cold day.")] and requests == 12
    with pytest.raises(ValueError, match="non-empty"):
        generate_pairs(writer, " ", n=3)


class _Fake(BaseHTTPRequestHandler):
    count = 0

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert self.path == "/v1/chat/completions" and body["model"] == "fake-model"
        assert self.headers["Authorization"] == "Bearer sekrit"
        _Fake.count += 1
        text = f"POSITIVE: Number {_Fake.count} is a joyful thing.\nNEGATIVE: Number {_Fake.count} is a sad thing."
        data = json.dumps({"choices": [{"message": {"content": text}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_endpoint_writer_cli_against_loopback_server(tmp_path, monkeypatch):
    server = HTTPServer(("127.0.0.1", 0), _Fake)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("STEERSCOPE_LLM_URL", f"http://127.0.0.1:{server.server_port}/v1")
        monkeypatch.setenv("STEERSCOPE_LLM_KEY", "sekrit")
        monkeypatch.setenv("STEERSCOPE_LLM_MODEL", "fake-model")
        out = tmp_path / "p.jsonl"
        result = CliRunner().invoke(
            app,
            [
                "pairs",
                "generate",
                "--concept",
                "joy",
                "--n",
                "5",
                "--writer",
                "endpoint",
                "--out",
                str(out),
                "--batch-size",
                "2",
            ],
        )
        assert result.exit_code == 0, result.output
        pairs = read_pairs(out)
        assert len(pairs) == 5 and len(set(pairs)) == 5 and "joyful" in pairs[0].positive
    finally:
        server.shutdown()
    monkeypatch.delenv("STEERSCOPE_LLM_MODEL")
    with pytest.raises(ValueError, match="STEERSCOPE_LLM_MODEL"):
        EndpointWriter.from_env()

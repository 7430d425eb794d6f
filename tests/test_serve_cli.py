"""`steerscope serve`: refused command lines (one error line, exit 2, before any model loads), the warning for a
host other machines can reach, and the real command serving the page until it is interrupted."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from cli_checks import bad
from serve_helpers import save_byte_model
from typer.testing import CliRunner

from steerscope.cli import app
from steerscope.serve.server import host_warning

STEERSCOPE = Path(sys.executable).with_name("steerscope")


@pytest.fixture
def taken_port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    yield sock.getsockname()[1]
    sock.close()


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--vectors", "no/such/folder"], ["--vectors no/such/folder is not a folder"]),
        (["--runs", "no/such/runs"], ["--runs no/such/runs is not a folder"]),
        (["--port", "70000"], ["--port must be between 0 and 65535"]),
        (["--port", "-1"], ["--port must be between 0 and 65535"]),
        (["--max-streams", "0"], ["--max-streams must be >= 1"]),
        (["--max-new-tokens", "0"], ["--max-new-tokens must be >= 1"]),
        (["--max-prompt-tokens", "0"], ["--max-prompt-tokens must be >= 1"]),
        (["--threads", "-1"], ["--threads must be 0"]),
    ],
)
def test_a_bad_command_line_is_one_error_line(args, needles):
    bad(["serve", "no-model-is-loaded-first", *args], *needles)


def test_a_taken_port_is_refused_before_the_model_loads(taken_port):
    bad(["serve", "no-model-is-loaded-first", "--port", taken_port], f"cannot listen on 127.0.0.1:{taken_port}",
        "choose another --port")  # fmt: skip


def test_a_host_others_can_reach_is_warned_about(taken_port):
    args = ["serve", "x", "--host", "0.0.0.0", "--port", str(taken_port), "--api-key", "k"]  # off loopback: a key
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2  # the port is taken there too: nothing listens on the network in this test
    assert "warning: listening on 0.0.0.0: anyone who can reach this machine" in " ".join(result.stdout.split())
    for host in ("0.0.0.0", "::", "192.168.1.5", "my-laptop.local"):
        assert "anyone who can reach this machine" in host_warning(host)
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        assert host_warning(host) is None


def test_the_command_serves_the_page_until_interrupted(tmp_path):
    folder = save_byte_model(tmp_path / "model")
    proc = subprocess.Popen(
        [str(STEERSCOPE), "serve", str(folder), "--port", "0", "--runs", str(tmp_path), "--threads", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline, url, seen = time.monotonic() + 120, None, []
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            line = proc.stdout.readline()
            seen.append(line)
            found = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
            url = found and found.group(1)
        assert url, "".join(seen)
        with urllib.request.urlopen(url, timeout=30) as page:
            assert "steerscope playground" in page.read().decode()
        with urllib.request.urlopen(url + "api/info", timeout=30) as info:
            assert b'"n_layers":3' in info.read()
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) in (0, 130)

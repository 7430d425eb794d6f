"""Running the web app: the socket it listens on, the warning for a non-local host, and a server in a
background thread (for a notebook, or a test that talks to it over real HTTP)."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time

import uvicorn
from fastapi import FastAPI

LOCAL_NAMES = ("localhost",)


def host_warning(host: str) -> str | None:
    """A warning when `host` is reachable from other machines (anything but a loopback address)."""
    if host in LOCAL_NAMES:
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        pass
    return (
        f"listening on {host}: anyone who can reach this machine on the network can use the playground and run "
        "the model; use --host 127.0.0.1 to keep it to this machine"
    )


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: any free port); a clear error when it cannot be had."""
    if not 0 <= port <= 65535:
        raise ValueError(f"--port must be between 0 and 65535, got {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ValueError(f"cannot listen on host {host!r}: {exc.strerror}; pass --host 127.0.0.1") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ValueError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port") from None
    sock.listen(128)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


def serve_forever(app: FastAPI, sock: socket.socket) -> None:
    """Serve `app` on the bound socket until interrupted."""
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])


class Background:
    """`with Background(app) as url:` serves the app on 127.0.0.1 (a free port) in a thread until the block ends."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0):
        self.sock = bind(host, port)
        self.url = url_of(self.sock)
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the playground server did not start")
            time.sleep(0.02)
        return self.url

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()

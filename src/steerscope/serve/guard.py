"""The one gate every request to the server passes, whatever route it is for (the playground's, the page's assets,
the run files, and any API mounted on the same app), before a byte of its body is read:

- `Host` must be the address the server listens on, the host it was started with, or a localhost name: a web page
  that rebinds its own name to 127.0.0.1 (DNS rebinding) is refused, so it cannot read runs, vectors or files;
- an `Origin`, when the browser sends one, must be this server itself: a foreign page's requests are refused;
- every request that sends a body (POST, PUT, PATCH, DELETE) must say `Content-Type: application/json`, which a
  browser cannot send cross-origin without a CORS preflight this server never grants: a `text/plain` "simple"
  request from another page is refused before it can queue work (CSRF).

Refusals are JSON `{"detail": one line}`: 403 for a host or origin, 415 for a body that is not declared JSON.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["RequestGuard", "host_name", "is_local_name"]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
JSON_TYPES = frozenset({"application/json"})


def is_local_name(name: str) -> bool:
    """Whether `name` (a host without port, lower case) always means this machine: `localhost`, a name under
    `.localhost` (browsers resolve those to loopback themselves) or a loopback address."""
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


def host_name(value: str) -> str | None:
    """The host part of a `Host` header value ('127.0.0.1:8765' -> '127.0.0.1', '[::1]:80' -> '::1'), lower case;
    None when it is not one host with an optional numeric port."""
    value = value.strip().lower()
    if not value or any(c in value for c in "/?#@ \t\\"):
        return None
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[1:end], value[end + 1 :]
        try:
            ipaddress.IPv6Address(name)
        except ValueError:
            return None
    else:
        name, _, port = value.partition(":")
        rest = f":{port}" if _ else ""
        if not name or ":" in port:
            return None
    if rest and not (rest.startswith(":") and rest[1:].isdigit() and len(rest) <= 6):
        return None
    return name


def _normal(host: str) -> str:
    """A host as compared: lower case, without the brackets of an IPv6 literal."""
    return host.strip().lower().strip("[]")


class RequestGuard:
    """Pure ASGI middleware enforcing the rules above (streams pass untouched; a refused body is never read).

    `hosts`: the names the server was started with (e.g. `--host`), allowed besides localhost names and the
    address each connection actually arrived on."""

    def __init__(self, app: ASGIApp, hosts: Iterable[str] = ()):
        self.app = app
        self.hosts = frozenset(_normal(h) for h in hosts if h)

    def allowed(self, name: str, scope: Scope) -> bool:
        server = scope.get("server")
        bound = _normal(str(server[0])) if server else None
        return is_local_name(name) or name in self.hosts or (bound is not None and name == bound)

    def refusal(self, scope: Scope) -> tuple[int, str] | None:
        headers: dict[str, str] = {}
        for key, value in scope.get("headers", []):
            headers.setdefault(key.decode("latin-1").lower(), value.decode("latin-1"))
        raw_host = headers.get("host", "")
        name = host_name(raw_host)
        if name is None or not self.allowed(_normal(name), scope):
            server = scope.get("server")
            where = f"http://127.0.0.1:{server[1]}/" if server and len(server) > 1 else "http://127.0.0.1:<port>/"
            return 403, (
                f"refused: the Host {raw_host[:100]!r} is not this server's address; this server answers only its "
                f"own address and localhost names (against DNS rebinding); open it as {where}"
            )
        origin = headers.get("origin")
        if origin is not None:
            parts = urlsplit(origin.strip().lower())
            if parts.scheme not in ("http", "https") or parts.netloc != raw_host.strip().lower():
                return 403, (
                    f"refused: a request from the page at {origin[:100]!r} (another site); this server answers "
                    "only its own page and clients that send no Origin, such as scripts and SDKs"
                )
        if scope.get("method", "GET") not in SAFE_METHODS:
            media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if media not in JSON_TYPES:
                shown = headers.get("content-type")
                return 415, (
                    f"refused: a {scope.get('method')} must send a JSON body with 'Content-Type: application/json'"
                    + (f", got {shown[:100]!r}" if shown else ", and this one sent no Content-Type")
                )
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        refused = self.refusal(scope)
        if refused is None:
            await self.app(scope, receive, send)
            return
        status, detail = refused
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": detail[:120]})
            return
        body = json.dumps({"detail": detail}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

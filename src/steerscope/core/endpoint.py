"""An OpenAI-compatible /chat/completions endpoint, configured from the environment (never required).

STEERSCOPE_LLM_URL (e.g. https://api.openai.com/v1), STEERSCOPE_LLM_MODEL, and STEERSCOPE_LLM_KEY if the
endpoint wants a key. Used by the synthetic pair writer and the LLM judge.

Credentials in the URL (https://user:KEY@host/v1) are sent as HTTP basic auth (STEERSCOPE_LLM_KEY, when set, is
sent as a bearer token instead). Neither ever appears in a message or a repr: they show as ***.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

from .errors import SteerscopeError

ENV_URL, ENV_KEY, ENV_MODEL = "STEERSCOPE_LLM_URL", "STEERSCOPE_LLM_KEY", "STEERSCOPE_LLM_MODEL"
HIDDEN = "***"
_SECRET_QUERY = re.compile(r"(?i)([?&](?:api[_-]?key|key|token|access[_-]?token|secret|password)=)[^&#\s]*")


class EndpointError(SteerscopeError, ConnectionError, ValueError):
    """A call to the chat endpoint failed (no answer, an HTTP error status, or a reply that is not a chat reply)."""


_USERINFO = re.compile(r"(^|//)([^\s/@:]*)(:[^\s/@]*)?@")


def redact_url(url: str) -> str:
    """The URL with any password (user:KEY@host, shown user:***@host), a bare token before the host (***@host)
    and secret-looking query values (?api_key=***) hidden."""
    text = _USERINFO.sub(lambda m: f"{m[1]}{m[2]}:{HIDDEN}@" if m[3] else f"{m[1]}{HIDDEN}@", url)
    return _SECRET_QUERY.sub(rf"\1{HIDDEN}", text)


def _split_credentials(url: str) -> tuple[str, str | None]:
    """(the URL without user:password@, 'user:password' or None)."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, host = parts.netloc.rsplit("@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=host)), urllib.parse.unquote(userinfo)


@dataclass
class ChatEndpoint:
    """One user message in, the assistant's reply out. Its repr and its errors never show the key."""

    url: str
    key: str = field(repr=False)
    model: str
    temperature: float = 0.8
    timeout: float = 60.0

    def __repr__(self) -> str:
        return (
            f"ChatEndpoint(url={redact_url(self.url)!r}, key={HIDDEN if self.key else ''!r}, model={self.model!r}, "
            f"temperature={self.temperature!r}, timeout={self.timeout!r})"
        )

    def _scrub(self, text: str) -> str:
        """`text` with the raw URL, the key and the URL's credentials replaced by their redacted forms."""
        text = text.replace(self.url, redact_url(self.url))
        try:
            userinfo = _split_credentials(self.url)[1] or ""
        except ValueError:
            userinfo = ""
        user, _, password = userinfo.partition(":")
        for secret in (self.key, password or user):
            if secret and len(secret) >= 3:
                text = text.replace(secret, HIDDEN)
        return text

    def _fail(self, cause: str) -> EndpointError:
        return EndpointError(self._scrub(f"the chat endpoint {redact_url(self.url)}/chat/completions failed: {cause}"))

    @classmethod
    def from_env(cls, purpose: str = "the endpoint", temperature: float = 0.8) -> ChatEndpoint:
        url, key, model = os.environ.get(ENV_URL), os.environ.get(ENV_KEY), os.environ.get(ENV_MODEL)
        if not url or not model:
            raise ValueError(
                f"{purpose} needs {ENV_URL} (e.g. https://api.openai.com/v1) and {ENV_MODEL} in the "
                f"environment, and {ENV_KEY} if the endpoint wants a key"
            )
        if not url.lower().startswith(("http://", "https://")):
            raise EndpointError(f"{ENV_URL} must be an http:// or https:// URL, got {redact_url(url)!r}")
        return cls(url=url.rstrip("/"), key=key or "", model=model, temperature=temperature)

    def chat(self, prompt: str, seed: int = 0) -> str:
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": self.temperature,
            "seed": seed,
        }
        headers = {"Content-Type": "application/json"}
        try:
            url, userinfo = _split_credentials(self.url)
        except ValueError as exc:
            raise self._fail(f"the URL is not valid ({exc})") from None
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        elif userinfo:
            headers["Authorization"] = "Basic " + base64.b64encode(userinfo.encode()).decode()
        try:
            request = urllib.request.Request(f"{url}/chat/completions", json.dumps(body).encode(), headers)
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = _body_excerpt(exc)
            raise self._fail(f"HTTP {exc.code} {exc.reason}" + (f": {detail}" if detail else "")) from None
        except urllib.error.URLError as exc:
            raise self._fail(f"no answer ({exc.reason})") from None
        except TimeoutError:
            raise self._fail(f"no answer within {self.timeout:g} s") from None
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise self._fail(f"{type(exc).__name__}: {exc}") from None
        try:
            payload = json.loads(raw)
        except ValueError:
            raise self._fail(f"the reply is not JSON: {_excerpt(raw)!r}") from None
        try:
            content = payload["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise self._fail(
                f"the reply is not a chat completion (no choices[0].message.content): {_excerpt(raw)!r}"
            ) from None
        if not isinstance(content, str):
            raise self._fail(f"the reply's message content is not text: {_excerpt(raw)!r}")
        return content


def _excerpt(raw: bytes, limit: int = 120) -> str:
    text = raw.decode("utf-8", errors="replace")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _body_excerpt(exc: urllib.error.HTTPError) -> str:
    try:
        return " ".join(_excerpt(exc.read()).split())
    except (OSError, http.client.HTTPException, ValueError):
        return ""

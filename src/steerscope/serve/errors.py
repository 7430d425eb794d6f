"""The playground's refusals: each is one message and the HTTP status the page shows it with."""

from __future__ import annotations

from ..core.errors import SteerscopeError


class RequestError(SteerscopeError, ValueError):
    """A request the playground refuses; `status` is its HTTP status (400 unless a subclass says otherwise)."""

    status = 400


class NotFound(RequestError):
    """A file that is not there, or a name that would reach outside the folders the server was given."""

    status = 404


class TooLarge(RequestError):
    """A prompt, upload or request body over the server's limits."""

    status = 413


class Busy(RequestError):
    """Every stream slot is taken."""

    status = 429


def one_line(exc: BaseException) -> str:
    """An error's message on one line (what the page shows)."""
    text = str(exc) or type(exc).__name__
    return " ".join(line.strip() for line in text.splitlines() if line.strip())

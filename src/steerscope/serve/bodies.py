"""A request's body read as JSON within a size limit, and pydantic's complaints about it as one line: shared by the
playground's routes and the OpenAI-compatible API."""

from __future__ import annotations

import json

from fastapi import Request
from pydantic import ValidationError

from .errors import RequestError, TooLarge

__all__ = ["read_json", "validation_line"]


async def read_json(request: Request, limit: int, what: str = "the request body") -> object:
    """The request body as JSON, refused (413) as soon as it grows past `limit` bytes."""
    too_large = TooLarge(f"{what} is over this server's limit of {limit} bytes")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(f"the request body is not valid JSON ({exc})") from None


def validation_line(exc: ValidationError, unknown_field: str | None = None) -> str:
    """A pydantic error as one line: 'vector.n_pairs: Input should be a valid integer' (`unknown_field`: the
    message for a field the model does not define, instead of pydantic's own)."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "body"
        unknown = unknown_field is not None and err["type"] == "extra_forbidden"
        parts.append(f"{where}: {unknown_field if unknown else err['msg']}")
    return "; ".join(parts)

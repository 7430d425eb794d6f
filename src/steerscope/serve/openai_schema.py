"""The request bodies of the OpenAI-compatible endpoints, and the one check that turns a body into work.

Fields follow OpenAI's completions and chat completions APIs. What steerscope cannot honour is refused by name
rather than ignored: a field OpenAI defines that we do not implement is accepted only at its neutral value
(`frequency_penalty` 0, `logprobs` null, ...), and a field nobody defines is refused (a typo in `steering` must
not silently give the unsteered model).
"""

from __future__ import annotations

import secrets
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..core.validate import finite, whole
from .errors import RequestError

FORBID = ConfigDict(extra="forbid")


class SteeringEntry(BaseModel):
    """`{"vector": NAME, "coefficient": C, "positions": "all"}`: NAME is a file under --vectors."""

    model_config = ConfigDict(extra="forbid", strict=True)
    vector: str
    coefficient: float
    positions: str = "all"


class StreamOptions(BaseModel):
    model_config = FORBID
    include_usage: bool = False


class Sampling(BaseModel):
    """What both endpoints share: decoding, limits, steering, and OpenAI's fields we accept only when neutral."""

    model_config = FORBID
    model: str | None = None
    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    n: int = 1
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    steering: list[SteeringEntry] = Field(default_factory=list)
    user: str | None = None
    # defined by OpenAI, not implemented here: accepted only at these neutral values
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logprobs: Any = None
    logit_bias: dict[str, float] | None = None


class CompletionBody(Sampling):
    prompt: str | list[str]
    echo: bool = False
    best_of: int | None = None
    suffix: str | None = None


class ContentPart(BaseModel):
    model_config = FORBID
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")  # clients add fields such as `name`; only role and content are read
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart]

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class ChatBody(Sampling):
    messages: list[Message]
    max_completion_tokens: int | None = None
    top_logprobs: int | None = None
    tools: list[Any] | None = None
    tool_choice: Any = None
    response_format: dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None


def refuse_unsupported(body: Sampling) -> None:
    """OpenAI fields this server does not implement, unless given at their neutral value."""
    neutral = {
        "frequency_penalty": (None, 0, 0.0),
        "presence_penalty": (None, 0, 0.0),
        "logprobs": (None, False, 0),
        "logit_bias": (None, {}),
        "echo": (False,),
        "best_of": (None, 1),
        "suffix": (None, ""),
        "top_logprobs": (None, 0),
        "tools": (None, []),
        "tool_choice": (None, "none"),
        "parallel_tool_calls": (None, False, True),
    }
    for field, allowed in neutral.items():
        if field in type(body).model_fields and getattr(body, field) not in allowed:
            raise RequestError(f"{field} is not supported by this server; leave it out (or at its default)")
    response_format = getattr(body, "response_format", None)
    if response_format not in (None, {"type": "text"}):
        raise RequestError('response_format is not supported by this server; leave it out (or use {"type": "text"})')


def stop_list(stop: str | list[str] | None) -> list[str]:
    """`stop` as a list of at most 4 non-empty strings (OpenAI's limit)."""
    items = [stop] if isinstance(stop, str) else list(stop or [])
    if len(items) > 4:
        raise RequestError(f"stop takes at most 4 strings, got {len(items)}")
    if any(s == "" for s in items):
        raise RequestError("stop strings must not be empty")
    return items


def decoding(body: Sampling, max_tokens: int | None, default_tokens: int, limit: int, max_n: int) -> dict:
    """The keyword arguments of `generate_completions` for a body (plus `n`): greedy at temperature 0, sampling
    otherwise; no seed: a random one (returned with the response, so a sampled answer can be redone)."""
    temperature = finite(body.temperature, "temperature", 0.0, 2.0)
    top_p = finite(body.top_p, "top_p", 0.0, 1.0)
    if top_p == 0:
        raise RequestError("top_p must be above 0 (1 keeps every token); use temperature 0 for greedy decoding")
    n = whole(body.n, "n", 1, max_n)
    new = whole(max_tokens if max_tokens is not None else min(default_tokens, limit), "max_tokens", 1, limit)
    seed = secrets.randbelow(2**31) if body.seed is None else whole(body.seed, "seed", 0, 2**63 - 1)
    greedy = temperature == 0
    return {
        "max_new_tokens": new,
        "do_sample": not greedy,
        "temperature": 1.0 if greedy else temperature,
        "top_p": 1.0 if greedy else top_p,
        "seed": seed,
        "stop": stop_list(body.stop),
        "n": n,
    }

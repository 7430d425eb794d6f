"""OpenAI-compatible endpoints on `steerscope serve`, with steering as a request parameter.

    GET  /v1/models              the served model
    GET  /v1/vectors             the vector files under --vectors, with their provenance (sha256, method, ...)
    POST /v1/completions         text completion; `prompt` a string or a list of strings
    POST /v1/chat/completions    chat completion; the model's own chat template renders `messages`

Both POSTs take `"steering": [{"vector": NAME, "coefficient": C, "positions": "all"}, ...]` (the official client
sends it as `extra_body`), `stream` (server-sent events ending in `data: [DONE]`), `max_tokens`, `temperature`
(0: greedy), `top_p`, `seed`, `stop`, `n`. Refusals are OpenAI-shaped: `{"error": {"message", "type", "param",
"code"}}` with status 400 (bad request), 401 (API key), 404 (unknown model or vector), 413 (too long) or 429 (every
stream slot taken). When the server has an API key, every /v1 request must send `Authorization: Bearer KEY`.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
import uuid
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError

from ..core.errors import SteerscopeError
from ..core.generate import NoChatTemplateError, chat_prompt
from ..core.io import sha256_file
from ..steering.requests import Steering, check_steering
from ..vllm.engine import VllmEngine
from .bodies import read_json, validation_line
from .completions import CompletionJob, run_completion, run_completion_vllm
from .engine import Ticket
from .errors import RequestError, TooLarge, one_line
from .openai_schema import ChatBody, CompletionBody, Sampling, SteeringEntry, decoding, refuse_unsupported
from .playground import Playground

MAX_BODY = 1_000_000  # bytes of one request body
MAX_CHOICES = 8  # n, and prompts x n for a list of prompts
CHAT_DEFAULT_TOKENS = 256  # max_tokens when a chat request gives none (completions: 16, as OpenAI's)
POLL_SECONDS = 0.25  # how often a non-streaming request checks that its client is still there
UNKNOWN_FIELD = "unknown field (this server takes OpenAI's fields and 'steering'; check the spelling)"


class Unauthorized(RequestError):
    status = 401


def error_body(message: str, status: int, param: str | None = None) -> dict:
    kind = {401: "authentication_error", 404: "not_found_error", 429: "rate_limit_error"}.get(
        status, "invalid_request_error"
    )
    code = {401: "invalid_api_key", 429: "rate_limit_exceeded", 413: "context_length_exceeded"}.get(status)
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def refusal(exc: Exception) -> JSONResponse:
    """An exception as OpenAI's error shape and status."""
    if isinstance(exc, ValidationError):
        return JSONResponse(error_body(validation_line(exc, UNKNOWN_FIELD), 400), status_code=400)
    status = exc.status if isinstance(exc, RequestError) else 400
    return JSONResponse(error_body(one_line(exc), status), status_code=status)


def openai_errors(handler: Callable[..., Awaitable[Response]]) -> Callable[..., Awaitable[Response]]:
    """Route wrapper: steerscope's refusals and bad input become OpenAI-shaped errors."""

    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except (SteerscopeError, ValueError, ValidationError) as exc:
            return refusal(exc)

    return wrapped


async def body_json(request: Request) -> dict:
    """The request body: a JSON object of at most MAX_BODY bytes."""
    data = await read_json(request, MAX_BODY)
    if not isinstance(data, dict):
        raise RequestError("the request body must be a JSON object")
    return data


class OpenAIServer:
    """The /v1 routes over a playground's model, vector folder, limits and queue."""

    def __init__(self, playground: Playground, api_key: str | None = None, vllm: VllmEngine | None = None):
        self.playground = playground
        self.api_key = api_key
        self.model_id = playground.model
        self.vllm = vllm  # None: the playground's Hugging Face model generates

    # --- checks ---------------------------------------------------------------------------------------------

    def authorize(self, request: Request) -> None:
        if self.api_key is None:
            return
        sent = request.headers.get("authorization", "")
        scheme, _, token = sent.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.api_key.encode()):
            raise Unauthorized("missing or wrong API key; send the header 'Authorization: Bearer <key>'")

    def check_model(self, name: str | None) -> None:
        known = {self.model_id, self.playground.lm.name, "default"}
        if name is not None and name not in known:
            raise RequestError(f"unknown model {name!r}; this server serves {self.model_id!r} (GET /v1/models)")

    def steering(self, entries: list[SteeringEntry]) -> list[Steering]:
        """The request's steering entries as loaded, checked vectors (a missing file: 404)."""
        library = self.playground.library
        if entries and library.folder is None:
            raise RequestError("this server has no vector folder; start it with --vectors DIR to steer by name")
        out = []
        for entry in entries:
            vector = library.load(entry.vector)
            out.append(
                Steering(
                    vector, entry.coefficient, entry.positions, entry.vector, sha256_file(library.path_of(entry.vector))
                )
            )
        check_steering(self.playground.lm, out)
        return out

    def job(self, body: Sampling, prompts: list[str], max_tokens: int | None, default_tokens: int) -> CompletionJob:
        refuse_unsupported(body)
        self.check_model(body.model)
        limits = self.playground.limits
        settings = decoding(body, max_tokens, default_tokens, limits.max_new_tokens, MAX_CHOICES)
        n = settings.pop("n")
        if not prompts or len(prompts) * n > MAX_CHOICES:
            raise RequestError(
                f"a request makes at most {MAX_CHOICES} completions (prompts x n), got {len(prompts) * n}"
            )
        counts = []
        for prompt in prompts:
            count = self.playground.count_tokens(prompt)
            if count == 0:
                raise RequestError("the prompt is empty; send some text")
            if count > limits.max_prompt_tokens:
                raise TooLarge(
                    f"the prompt has {count} tokens, over this server's limit of {limits.max_prompt_tokens} "
                    "(start it with a larger --max-prompt-tokens)"
                )
            counts.append(count)
        return CompletionJob(prompts, counts, n, settings, self.steering(body.steering))

    def render_chat(self, body: ChatBody) -> str:
        messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in body.messages]
        try:
            return chat_prompt(self.playground.lm, messages)
        except NoChatTemplateError as exc:
            raise RequestError(f"{exc} to /v1/completions") from None

    # --- running --------------------------------------------------------------------------------------------

    def submit(self, job: CompletionJob) -> Ticket:
        """Queue the job on the model thread (its slots, 429 and cancelling apply to either engine)."""
        lm, vllm, loop = self.playground.lm, self.vllm, asyncio.get_running_loop()
        if vllm is not None:
            return self.playground.engine.submit(lambda t: run_completion_vllm(vllm, job, t), loop)
        return self.playground.engine.submit(lambda t: run_completion(lm, job, t), loop)

    def meta(self, job: CompletionJob) -> dict:
        return {"seed": job.generation["seed"], "steering": [s.provenance() for s in job.steering]}

    async def collect(self, request: Request, ticket: Ticket) -> list[dict]:
        """Wait for every choice; a client that leaves cancels the work."""
        choices: list[dict] = []
        try:
            while True:
                try:
                    event = await asyncio.wait_for(ticket.events.get(), POLL_SECONDS)
                except TimeoutError:
                    if await request.is_disconnected():
                        return []
                    continue
                if event["type"] == "choice":
                    choices.append(event)
                elif event["type"] == "error":
                    raise RequestError(event["message"])
                elif event["type"] == "closed":
                    return sorted(choices, key=lambda c: c["index"])
        finally:
            ticket.cancel()

    def stream(self, ticket: Ticket, shape: Callable[[dict], dict | None], usage: bool, job: CompletionJob):
        async def events():
            done: list[dict] = []
            try:
                while True:
                    event = await ticket.events.get()
                    if event["type"] == "error":
                        yield f"data: {json.dumps(error_body(event['message'], 400))}\n\n"
                    elif event["type"] == "closed":
                        if usage:
                            yield f"data: {json.dumps(shape({'type': 'usage', 'usage': self.usage(job, done)}))}\n\n"
                        yield "data: [DONE]\n\n"
                        return
                    else:
                        if event["type"] == "choice":
                            done.append(event)
                        chunk = shape(event)
                        if chunk is not None:
                            yield f"data: {json.dumps(chunk)}\n\n"
            finally:
                ticket.cancel()  # no-op when finished; frees the slot at the next token when the client left

        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

    @staticmethod
    def usage(job: CompletionJob, choices: list[dict]) -> dict:
        prompt = sum(job.prompt_tokens)
        completion = sum(c["completion_tokens"] for c in choices)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    # --- endpoints ------------------------------------------------------------------------------------------

    async def answer(
        self,
        request: Request,
        body: Sampling,
        job: CompletionJob,
        names: tuple[str, str, str],
        chunk_choice: Callable[[dict], dict],
        final_choice: Callable[[dict], dict],
    ) -> Response:
        """Queue the job and answer: a stream of chunks (`chunk_choice` per delta or finished choice), or one JSON
        object (`final_choice` per choice). `names`: the id prefix, the object and the chunk object."""
        ticket = self.submit(job)
        prefix, kind, chunk_kind = names
        head = {"id": f"{prefix}-{uuid.uuid4().hex}", "created": int(time.time()), "model": self.model_id}
        if body.stream:

            def shape(event: dict) -> dict | None:
                if event["type"] == "usage":
                    return {**head, "object": chunk_kind, "choices": [], "usage": event["usage"]}
                if event["type"] in ("delta", "choice"):
                    return {**head, "object": chunk_kind, "choices": [chunk_choice(event)]}
                return None

            include = bool(body.stream_options and body.stream_options.include_usage)
            return self.stream(ticket, shape, include, job)
        choices = await self.collect(request, ticket)
        return JSONResponse(
            {
                **head,
                "object": kind,
                "choices": [final_choice(c) for c in choices],
                "usage": self.usage(job, choices),
                "steerscope": self.meta(job),
            }
        )

    async def completions(self, request: Request) -> Response:
        self.authorize(request)
        body = CompletionBody.model_validate(await body_json(request))
        prompts = [body.prompt] if isinstance(body.prompt, str) else list(body.prompt)
        job = await asyncio.to_thread(self.job, body, prompts, body.max_tokens, 16)

        def chunk(event: dict) -> dict:
            done = event["type"] == "choice"
            text, reason = ("", event["finish_reason"]) if done else (event["text"], None)
            return {"index": event["index"], "text": text, "finish_reason": reason, "logprobs": None}

        def final(c: dict) -> dict:
            return {"index": c["index"], "text": c["text"], "finish_reason": c["finish_reason"], "logprobs": None}

        return await self.answer(request, body, job, ("cmpl", "text_completion", "text_completion"), chunk, final)

    async def chat(self, request: Request) -> Response:
        self.authorize(request)
        body = ChatBody.model_validate(await body_json(request))
        prompt = self.render_chat(body)
        max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
        job = await asyncio.to_thread(self.job, body, [prompt], max_tokens, CHAT_DEFAULT_TOKENS)
        started: set[int] = set()

        def chunk(event: dict) -> dict:
            if event["type"] == "choice":
                return {"index": event["index"], "delta": {}, "finish_reason": event["finish_reason"]}
            delta = {"content": event["text"]}
            if event["index"] not in started:  # the first chunk of a choice says whose turn it is
                started.add(event["index"])
                delta = {"role": "assistant", **delta}
            return {"index": event["index"], "delta": delta, "finish_reason": None}

        def final(c: dict) -> dict:
            message = {"role": "assistant", "content": c["text"]}
            return {"index": c["index"], "message": message, "finish_reason": c["finish_reason"], "logprobs": None}

        names = ("chatcmpl", "chat.completion", "chat.completion.chunk")
        return await self.answer(request, body, job, names, chunk, final)

    async def models(self, request: Request) -> Response:
        self.authorize(request)
        lm = self.playground.lm
        card = {
            "id": self.model_id,
            "object": "model",
            "created": 0,
            "owned_by": "steerscope",
            "name": lm.name,
            "fingerprint": lm.fingerprint(),
            "n_layers": lm.n_layers,
            "d_model": lm.d_model,
            "engine": "vllm" if self.vllm is not None else "hf",
        }
        return JSONResponse({"object": "list", "data": [card]})

    async def vectors(self, request: Request) -> Response:
        self.authorize(request)
        library = self.playground.library

        def listing() -> list[dict]:
            rows = library.listing()
            for row in rows:
                row["sha256"] = sha256_file(library.path_of(row["name"]))
            return rows

        return JSONResponse({"object": "list", "data": await asyncio.to_thread(listing)})


def add_openai_routes(
    app: FastAPI, playground: Playground, api_key: str | None = None, vllm: VllmEngine | None = None
) -> OpenAIServer:
    """Mount the /v1 routes on the playground's app (`vllm`: generate through this engine instead)."""
    server = OpenAIServer(playground, api_key, vllm)
    router = APIRouter()
    router.add_api_route("/v1/models", openai_errors(server.models), methods=["GET"])
    router.add_api_route("/v1/vectors", openai_errors(server.vectors), methods=["GET"])
    router.add_api_route("/v1/completions", openai_errors(server.completions), methods=["POST"])
    router.add_api_route("/v1/chat/completions", openai_errors(server.chat), methods=["POST"])
    app.include_router(router)
    return server

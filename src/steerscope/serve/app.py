"""The playground's web app: the page, its JSON API and the streams (server-sent events).

    GET  /                     the page (static/index.html; every asset is served from static/, no CDN)
    GET  /api/info             the model, its sites, the methods, pair sets, positions and limits
    GET  /api/status           stream slots in use
    GET  /api/vectors          the vector files under --vectors
    POST /api/pairs            upload a contrast-pair file ({"name", "text"}), validated like load_pairs
    POST /api/steer            a steering request (plan.SteerRequest) -> a stream of events
    GET  /api/runs             the run folders under --runs
    GET  /runs/{path}          a file inside --runs (reports are served sandboxed: no script runs)
    /v1/...                    the OpenAI-compatible API with steering as a request parameter (openai_api.py)

Refusals are JSON {"detail": one line} with a 4xx status. Every request first passes guard.RequestGuard (Host,
Origin, JSON bodies only), whatever route it is for.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..core.errors import SteerscopeError
from ..core.positions import POSITION_SPECS
from ..methods import get_method
from ..steering.pairs import BUILTIN
from ..vllm.engine import VllmEngine
from .bodies import read_json, validation_line
from .engine import Ticket
from .errors import RequestError, one_line
from .files import inside
from .guard import RequestGuard
from .openai_api import add_openai_routes
from .plan import SteerRequest
from .playground import Playground
from .runs import list_runs
from .vectors import fit_methods

STATIC = Path(str(resources.files("steerscope") / "serve" / "static"))
PAGE_POLICY = "default-src 'self'; img-src 'self' data:; frame-src 'self'; object-src 'none'; base-uri 'none'"
REPORT_POLICY = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:"
MAX_BODY_OVERHEAD = 64_000  # bytes a request body may hold besides an upload's text


def events(ticket: Ticket):
    """The ticket's events as server-sent events; a client that goes away cancels the ticket."""

    async def stream():
        try:
            while True:
                event = await ticket.events.get()
                yield f"data: {json.dumps(event)}\n\n"
                if event["type"] == "closed":
                    return
        finally:
            ticket.cancel()  # no-op when the work is done; frees the slot at the next token otherwise

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


class SecurityHeaders:
    """ASGI middleware: every response says what it may load (the page: only this server; a run's report:
    nothing, and no script runs) and that its type is not to be guessed. Pure ASGI, so streams pass untouched."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        policy = REPORT_POLICY if scope["path"].startswith("/runs/") else PAGE_POLICY

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Content-Security-Policy"] = policy
                headers["X-Content-Type-Options"] = "nosniff"
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(
    playground: Playground, hosts: Iterable[str] = (), api_key: str | None = None, vllm: VllmEngine | None = None
) -> FastAPI:
    """The web app around a playground (a loaded model, its vectors, runs and limits), with the OpenAI-compatible
    /v1 routes beside it (`api_key`: required on every /v1 request when given; `vllm`: a VllmEngine that generates
    for /v1 instead of the playground's Hugging Face model).

    Every route, whoever adds it, sits behind `guard.RequestGuard`: only this server's own address, the `hosts` it
    was started with and localhost names; no foreign Origin; every POST declared `application/json`."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        playground.engine.close()
        if vllm is not None:
            vllm.close()

    app = FastAPI(title="steerscope playground", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.playground = playground
    limits = playground.limits

    @app.exception_handler(RequestError)
    async def refused(request: Request, exc: RequestError):
        return JSONResponse({"detail": one_line(exc)}, status_code=exc.status)

    @app.exception_handler(SteerscopeError)
    @app.exception_handler(ValueError)
    async def bad_input(request: Request, exc: Exception):
        return JSONResponse({"detail": one_line(exc)}, status_code=400)

    @app.exception_handler(ValidationError)
    async def malformed(request: Request, exc: ValidationError):
        return JSONResponse({"detail": validation_line(exc)}, status_code=422)

    app.add_middleware(RequestGuard, hosts=tuple(hosts))  # before any route reads a byte of the request
    app.add_middleware(SecurityHeaders)

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    @app.get("/api/info")
    async def info():
        methods = []
        for name in fit_methods():
            spec = get_method(name)
            methods.append(
                {
                    "name": name,
                    "summary": spec.summary,
                    "min_pairs": spec.min_pairs,
                    "max_pairs": spec.max_pairs,
                    "reads": list(spec.reads),
                }
            )
        return {**playground.info(), "methods": methods, "pair_sets": list(BUILTIN), "positions": POSITION_SPECS}

    @app.get("/api/status")
    async def status():
        return playground.engine.status()

    @app.get("/api/vectors")
    async def vectors():
        return {"vectors": await asyncio.to_thread(playground.library.listing)}

    @app.post("/api/pairs")
    async def upload(request: Request):
        data = await read_json(request, limits.max_upload_bytes + MAX_BODY_OVERHEAD, "the upload")
        if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not isinstance(data.get("text"), str):
            raise RequestError('an upload is a JSON object {"name": file name, "text": the file\'s text}')
        got = playground.library.upload(data["name"], data["text"])
        return {"key": got.key, "name": got.name, "n_pairs": len(got.pairs)}

    @app.post("/api/steer")
    async def steer(request: Request):
        data = await read_json(request, MAX_BODY_OVERHEAD)
        req = SteerRequest.model_validate(data)
        plan = await asyncio.to_thread(playground.plan, req)
        ticket = playground.engine.submit(lambda t: playground.run(plan, t), asyncio.get_running_loop())
        return events(ticket)

    @app.get("/api/runs")
    async def runs():
        return {"runs": list_runs(playground.runs)}

    @app.get("/runs/{name:path}", include_in_schema=False)
    async def run_file(name: str):
        return FileResponse(inside(playground.runs, name))

    add_openai_routes(app, playground, api_key, vllm)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app

"""CLI: `steerscope serve`, the steering playground in the browser."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._app import Device, Dtype, Engine, Model, Threads, TrustRemoteCode, _load, _load_vllm, app, console, set_threads


def _folder(path: Path | None, flag: str) -> Path | None:
    if path is not None and not path.is_dir():
        raise NotADirectoryError(f"{flag} {path} is not a folder; give an existing folder")
    return path


@app.command()
def serve(
    model: Model = "default",
    vectors: Annotated[Path | None, typer.Option(help="folder of steering-vector files to choose from")] = None,
    runs: Annotated[
        Path | None, typer.Option(help="folder of run results to browse (default: ./runs when it exists)")
    ] = None,
    host: Annotated[str, typer.Option(help="address to listen on; 127.0.0.1 keeps it to this machine")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on (0: any free port)")] = 8765,
    max_prompt_tokens: Annotated[int, typer.Option(help="longest prompt a request may send")] = 256,
    max_new_tokens: Annotated[int, typer.Option(help="most tokens a request may ask for per completion")] = 200,
    max_streams: Annotated[int, typer.Option(help="requests queued or running at once; more get HTTP 429")] = 4,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="STEERSCOPE_API_KEY",
            help="key every /v1 request must send as 'Authorization: Bearer KEY' (required off 127.0.0.1)",
            show_envvar=True,
        ),
    ] = None,
    engine: Engine = "hf",
    threads: Threads = 0,
    dtype: Dtype = "float32",
    device: Device = "cpu",
    trust_remote_code: TrustRemoteCode = False,
) -> None:
    """A local web page to steer the model live, and an OpenAI-compatible API (/v1) with steering per request."""
    from ..core.packages import MissingPackageError
    from ..core.validate import whole

    try:
        from ..serve import Limits, Playground, create_app
        from ..serve.server import bind, host_warning, serve_forever, url_of
    except ModuleNotFoundError as exc:
        if exc.name not in ("fastapi", "starlette", "uvicorn", "pydantic"):
            raise
        raise MissingPackageError(
            f"steerscope serve needs FastAPI and uvicorn ({exc.name} is missing); install them with: "
            "pip install 'steerscope[serve]'"
        ) from exc

    limits = Limits(
        max_prompt_tokens=whole(max_prompt_tokens, "--max-prompt-tokens", 1),
        max_new_tokens=whole(max_new_tokens, "--max-new-tokens", 1),
        max_streams=whole(max_streams, "--max-streams", 1),
    )
    vectors, runs = _folder(vectors, "--vectors"), _folder(runs, "--runs")
    if runs is None and Path("runs").is_dir():
        runs = Path("runs")
    warning = host_warning(host)
    if engine not in ("hf", "vllm"):
        raise ValueError(f"--engine must be hf or vllm, got {engine!r}")
    if api_key is not None and not api_key.strip():
        raise ValueError("--api-key is empty; give a key (or leave the option and STEERSCOPE_API_KEY unset)")
    if warning and api_key is None:
        raise ValueError(
            f"--host {host} is reachable from other machines, so the API needs a key: pass --api-key KEY "
            "(or set STEERSCOPE_API_KEY), or use --host 127.0.0.1"
        )
    if warning:
        console.print(f"[bold yellow]warning:[/bold yellow] {warning}", highlight=False)
    set_threads(threads)
    sock = bind(host, port)  # before the model loads: a taken port fails at once
    lm = _load(model, dtype, device, trust_remote_code)
    playground = Playground(lm, model, vectors, runs, limits)
    vllm = _load_vllm(model, dtype) if engine == "vllm" else None  # /v1 generates there; the page keeps lm
    url = url_of(sock)
    console.print(f"steering playground for {lm.name}: [bold]{url}[/bold]  (Ctrl+C stops it)")
    api = f"OpenAI-compatible API: {url}v1  (model {model!r}; steering in the request body)"
    console.print(api, highlight=False)
    serve_forever(create_app(playground, hosts=(host,), api_key=api_key, vllm=vllm), sock)

"""The Typer app, its one error boundary, its console, and the option types and helpers every command shares."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Annotated

import click
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from ..core.errors import SteerscopeError
from ..core.validate import BadNumberError

# Expected failures: steerscope's own errors and bad input (a path that is not there, or already there, or not
# readable; a value out of range). They print one line and exit 2; anything else is a bug and shows its traceback.
EXPECTED_ERRORS = (
    SteerscopeError,
    FileExistsError,
    FileNotFoundError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
    ValueError,
)
BAD_INPUT_EXIT = 2
INTERRUPTED_EXIT = 130
INTERRUPTED = "interrupted; finished work is kept: rerun the same command to resume where it stopped"


def error_line(exc: BaseException) -> str:
    """The one line shown for an expected failure: its message, with OS errors naming the path."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror and len(exc.args) <= 2:
        text = f"{exc.strerror}: {exc.filename}"  # [Errno 2] ... from the OS itself: say which path, plainly
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


# A command line that does not parse (a value of the wrong type, an unknown option, a missing argument): click's
# UsageError, whose class typer keeps in its own copy of click (BadParameter is one of its subclasses).
USAGE_ERROR: type[Exception] = typer.BadParameter.__mro__[1]


def _finite_numbers(callback, params: list) -> object:
    """`callback` refusing NaN and infinite values of every float option (and list of floats) before it runs, naming
    the option: every number a user types is checked where it is parsed, whatever the command does with it."""
    names = {p.name: (p.opts[0] if getattr(p, "opts", None) else p.name) for p in params}

    def checked(*args, **kwargs):
        for name, value in kwargs.items():
            values = value if isinstance(value, list | tuple) else [value]
            for v in values:
                if isinstance(v, float) and not math.isfinite(v):
                    raise BadNumberError(f"{names.get(name, name)} must be a finite number, got {v}")
        return callback(*args, **kwargs)

    checked.steerscope_checked = True  # type: ignore[attr-defined]
    return checked


def _guard_numbers(group) -> None:
    """Wrap every command's callback under `group` (recursively) with `_finite_numbers`, once."""
    for command in getattr(group, "commands", {}).values():
        if getattr(command, "commands", None) is not None:
            _guard_numbers(command)
        elif command.callback is not None and not hasattr(command.callback, "steerscope_checked"):
            command.callback = _finite_numbers(command.callback, command.params)


class Boundary(TyperGroup):
    """The app's root group: every command and sub-command runs inside its `invoke`, the one error boundary."""

    def invoke(self, ctx: click.Context):
        _guard_numbers(self)
        try:
            return super().invoke(ctx)
        except USAGE_ERROR as exc:
            path = exc.ctx.command_path.split()[1:] if getattr(exc, "ctx", None) is not None else []
            where = " ".join(["steerscope", *path])
            message = error_line(exc) if not hasattr(exc, "format_message") else exc.format_message()
            click.echo(f"error: {' '.join(message.split())} (see: {where} --help)", err=True)
            raise typer.Exit(BAD_INPUT_EXIT) from None
        except EXPECTED_ERRORS as exc:
            click.echo(f"error: {error_line(exc)}", err=True)  # plain text: no markup eats "[brackets]"
            raise typer.Exit(BAD_INPUT_EXIT) from exc
        except KeyboardInterrupt:
            click.echo(INTERRUPTED, err=True)
            raise typer.Exit(INTERRUPTED_EXIT) from None


# Plain click help (no rich panels): it wraps every column and never cuts an option name short, so `--help`
# stays readable in an 80-column terminal (rich's tables truncated names such as --repetition-penalty there).
HELP_MARKUP = None

app = typer.Typer(
    cls=Boundary,
    rich_markup_mode=HELP_MARKUP,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    help="Activation engineering and depth analysis.",
)
console = Console()

MODEL_HELP = "'default' (SmolLM2-135M-Instruct), a Hugging Face id, a local model folder or a .gguf file"

# Option types shared by the commands (each command sets its own default).
Model = Annotated[str, typer.Argument(help=MODEL_HELP)]
ModelOption = Annotated[str, typer.Option("--model", help=MODEL_HELP)]
Out = Annotated[Path, typer.Option(help="output folder (an existing one is refused unless --overwrite)")]
OutFile = Annotated[Path, typer.Option(help="output file (an existing one is refused unless --overwrite)")]
Overwrite = Annotated[bool, typer.Option(help="replace an existing output, only once the new one is complete")]
Restart = Annotated[
    bool, typer.Option(help="start over instead of resuming an unfinished run (needed when its settings differ)")
]
Dtype = Annotated[str, typer.Option(help="float32, bfloat16, float16 or auto")]
Device = Annotated[str, typer.Option(help="cpu, cuda, ...")]
BatchSize = Annotated[int, typer.Option(help="sequences per forward pass")]
Seed = Annotated[int, typer.Option(help="random seed")]
Threads = Annotated[int, typer.Option(help="torch CPU threads (0: torch's default)")]
MaxNewTokens = Annotated[int, typer.Option(help="tokens generated per completion")]
TRUST_REMOTE_CODE_HELP = "run Python code shipped in the model folder (only for folders you trust)"
TrustRemoteCode = Annotated[bool, typer.Option("--trust-remote-code", help=TRUST_REMOTE_CODE_HELP)]
DeviceMap = Annotated[
    str,
    typer.Option(
        "--device-map",
        help="split a model too large for one device over several (accelerate): auto, balanced, sequential, or a "
        'JSON {module: GPU index | "cpu" | "disk"} (or a .json file holding one); --device is then unused',
    ),
]
MaxMemory = Annotated[
    str, typer.Option("--max-memory", help="memory per device for --device-map, e.g. 0=20GiB,1=20GiB,cpu=64GiB")
]
# Ray (pip install 'steerscope[ray]'): where and how wide to run
Engine = Annotated[str, typer.Option(help="hf (Hugging Face hooks, the reference) or vllm (needs vLLM installed)")]
UseRay = Annotated[bool, typer.Option("--ray", help="run on Ray workers (needs the ray extra of steerscope)")]
RayAddress = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="the Ray cluster: auto (the one `ray start --head` began on this machine) or HOST:PORT; "
        "default: a local Ray instance with this machine's cores",
    ),
]
RayWorkers = Annotated[int | None, typer.Option("--workers", help="Ray workers (default: all the cluster holds)")]
GpusPerWorker = Annotated[float | None, typer.Option(help="GPUs each Ray worker asks for (a model split over 2: 2)")]
CpusPerWorker = Annotated[float | None, typer.Option(help="CPUs each Ray worker asks for (default 1)")]


def ray_spec(
    use_ray: bool,
    address: str | None,
    workers: int | None,
    gpus_per_worker: float | None,
    cpus_per_worker: float | None,
    base=None,
):
    """The RaySpec a command line asks for (its options over `base`, a config's [ray] table), or None: no Ray.
    Any Ray option implies --ray."""
    from ..core.cluster import RaySpec

    given = {"address": address, "workers": workers, "gpus_per_worker": gpus_per_worker,
             "cpus_per_worker": cpus_per_worker}  # fmt: skip
    if not use_ray and base is None and all(v is None for v in given.values()):
        return None
    start = base if base is not None else RaySpec()
    merged = {k: getattr(start, k) if v is None else v for k, v in given.items()}
    return RaySpec(**merged)


def refuse_existing(path: Path, overwrite: bool) -> None:
    """Refuse to replace an existing output file unless --overwrite was given."""
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite to replace it, or choose another --out")


def set_threads(threads: int) -> None:
    """torch CPU threads for this process (0 keeps torch's default)."""
    if threads < 0:
        raise ValueError(f"--threads must be 0 (torch's default) or more, got {threads}")
    if threads:
        import torch

        torch.set_num_threads(threads)


def _load_vllm(model: str, dtype: str, device_map: str = "", max_memory: str = ""):
    """A VllmEngine for `--engine vllm` (vLLM places the model itself: no --device-map / --max-memory)."""
    from ..vllm import VllmEngine

    if device_map or max_memory:
        raise ValueError(
            "--device-map / --max-memory place a Hugging Face model; with --engine vllm use vLLM's tensor or "
            "pipeline parallelism (README: vLLM as an engine)"
        )
    start = time.perf_counter()
    with console.status(f"starting vLLM on {model} ..."):
        engine = VllmEngine(model, dtype="float32" if dtype == "auto" else dtype)
    console.print(f"started vLLM on [bold]{engine.name}[/bold] in {time.perf_counter() - start:.1f}s")
    return engine


def _load(
    model: str, dtype: str, device: str, trust_remote_code: bool = False, device_map: str = "", max_memory: str = ""
):
    from ..core.loading import load_model

    start = time.perf_counter()
    with console.status(f"loading {model} ..."):
        lm = load_model(
            model,
            dtype=dtype,
            device=device,
            trust_remote_code=trust_remote_code,
            device_map=device_map or None,
            max_memory=max_memory or None,
        )
    console.print(f"loaded [bold]{lm.name}[/bold] in {time.perf_counter() - start:.1f}s from {lm.source}")
    return lm


@app.command()
def info(
    model: Model = "default",
    dtype: Dtype = "float32",
    device: Device = "cpu",
    trust_remote_code: TrustRemoteCode = False,
    device_map: DeviceMap = "",
    max_memory: MaxMemory = "",
) -> None:
    """Print a model's family, size and site names."""
    from ..core.models import model_summary

    summary = model_summary(_load(model, dtype, device, trust_remote_code, device_map, max_memory))
    table = Table(show_header=False)
    for key, value in summary.items():
        if key != "sites":
            table.add_row(key, Text(value))
    console.print(table)
    console.print(f"sites {summary['sites']}", markup=False)


DEFAULT_PROMPTS = ["I went to the park today and", "My opinion of the new restaurant is that"]


@app.command()
def steer(
    model: Model = "default",
    site: Annotated[
        str, typer.Option(help="where to add the vector (default: resid_pre at a third of the depth)")
    ] = "",
    coefficient: Annotated[float, typer.Option(help="multiplier of the vector; the negative is shown too")] = 4.0,
    pairs: Annotated[str, typer.Option(help="built-in contrast pair set")] = "sentiment",
    prompt: Annotated[list[str] | None, typer.Option(help="prompt(s) to complete; repeat for several")] = None,
    max_new_tokens: MaxNewTokens = 30,
    dtype: Dtype = "float32",
    device: Device = "cpu",
    trust_remote_code: TrustRemoteCode = False,
    device_map: DeviceMap = "",
    max_memory: MaxMemory = "",
    engine: Engine = "hf",
) -> None:
    """Find a mean-difference vector from built-in contrast pairs and show steered next to unsteered text."""
    from ..core.validate import check_coefficient, whole
    from ..steering.generate import steer_with_pairs
    from ..vllm.completions import check_engine, steer_with_pairs_vllm

    whole(max_new_tokens, "--max-new-tokens", 1)  # numbers first: before the model loads
    check_coefficient(coefficient, "--coefficient")
    prompts = prompt or DEFAULT_PROMPTS
    if check_engine(engine) == "vllm":
        runner = _load_vllm(model, dtype, device_map, max_memory)
        name = runner.name
        with console.status(f"extracting mean_diff from {pairs} pairs and generating through vLLM ..."):
            vector, texts = steer_with_pairs_vllm(runner, pairs, site or None, coefficient, prompts, max_new_tokens)
        runner.close()
    else:
        lm = _load(model, dtype, device, trust_remote_code, device_map, max_memory)
        name = lm.name
        with console.status(f"extracting mean_diff from {pairs} pairs and generating ..."):
            vector, texts = steer_with_pairs(lm, pairs, site or None, coefficient, prompts, max_new_tokens)
    (at,) = vector.sites
    console.print(f"{pairs} vector at {at}: {vector.meta['n_pairs']} pairs, norm {vector.meta['norms'][at]:.2f}")
    print_side_by_side(texts, prompts, f"steering {name} at {at} (greedy decoding, engine {engine})")


def print_side_by_side(texts: dict[str, list[str]], prompts: list[str], title: str) -> None:
    """Completions per setting, one column each, one row per prompt."""
    table = Table(title=title, show_lines=True)
    table.add_column("prompt", style="bold")
    for label in texts:
        table.add_column(Text(label))
    for i, p in enumerate(prompts):  # Text: a "[...]" in a prompt or completion is shown, not read as markup
        table.add_row(Text(p), *(Text(texts[label][i].strip()) for label in texts))
    console.print(table)

"""CLI: `steerscope extract`, `steerscope generate`, `steerscope vectors inspect`."""

from __future__ import annotations

from pathlib import Path

import typer

from ..methods import METHODS
from ._app import MODEL_HELP, _load, app, console, print_side_by_side

vectors_app = typer.Typer(help="Inspect steering-vector files.", no_args_is_help=True)
app.add_typer(vectors_app, name="vectors")

VECTOR_METHODS = [name for name, spec in METHODS.items() if spec.vector]
PAIRS_HELP = "built-in set (sentiment, weddings, formality) or a .jsonl / .json (CAA A/B) / .csv file"


def _option_value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _parse_options(options: list[str]) -> dict:
    parsed = {}
    for item in options:
        if "=" not in item:
            raise typer.BadParameter(f"method options look like name=value, got {item!r}")
        key, value = item.split("=", 1)
        parsed[key.strip()] = _option_value(value.strip())
    return parsed


@app.command()
def extract(
    model: str = typer.Argument("default", help=MODEL_HELP),
    pairs: str = typer.Option("sentiment", help=PAIRS_HELP),
    split: str = typer.Option("train", help="train, test or all (rows without a split count as train)"),
    n_pairs: int = typer.Option(0, help="use the first N pairs (0: all)"),
    method: str = typer.Option("mean_diff", help="a method that makes a vector file: " + ", ".join(VECTOR_METHODS)),
    site: list[str] = typer.Option(["resid_pre.10"], help="site(s) to read; repeat for several"),  # noqa: B008
    read: str = typer.Option("last", help="last (or answer, for A/B items), mean or max over tokens"),
    option: list[str] = typer.Option([], help="method option name=value, e.g. C=0.1 or variant=center"),  # noqa: B008
    batch_size: int = typer.Option(8),
    seed: int = typer.Option(0),
    out: Path = typer.Option(Path("vector.safetensors"), help="vector file to write"),  # noqa: B008
    dtype: str = typer.Option("float32"),
    device: str = typer.Option("cpu"),
) -> None:
    """Find a steering vector from contrast pairs and save it (safetensors + metadata)."""
    from ..methods import fit, get_method
    from ..steering.pairs import PairDataError, load_pairs

    try:
        spec = get_method(method)
        if not spec.vector:
            raise ValueError(f"{method} does not make a vector file; methods that do: {', '.join(VECTOR_METHODS)}")
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc

    try:
        contrast = load_pairs(pairs, split)
    except (PairDataError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    if n_pairs:
        if n_pairs > len(contrast):
            console.print(f"[red]error:[/red] asked for {n_pairs} pairs but {pairs} ({split}) has {len(contrast)}")
            raise typer.Exit(2)
        contrast = contrast[:n_pairs]
    lm = _load(model, dtype, device)
    kwargs = {"batch_size": batch_size, "seed": seed, **_parse_options(option)}
    if spec.reads:  # a method that reads every position (actadd) takes no read
        kwargs["read"] = read
    try:
        with console.status(f"{method} on {len(contrast)} pairs at {', '.join(site)} ..."):
            vector = fit(method, lm, contrast, site, **kwargs)
    except (ValueError, TypeError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    vector.meta["dataset"] = f"{pairs}:{split}"
    vector.save(out)
    console.print(vector.describe())
    console.print(f"saved {out}")


@app.command()
def generate(
    model: str = typer.Argument("default", help=MODEL_HELP),
    vector: Path = typer.Option(..., help="steering-vector file"),  # noqa: B008
    coefficient: list[float] = typer.Option([4.0], help="coefficient(s); unsteered is always shown"),  # noqa: B008
    positions: str = typer.Option("all", help="all, prompt, front, last_prompt or generated"),
    prompt: list[str] = typer.Option(["I think that"], help="prompt(s) to complete"),  # noqa: B008
    max_new_tokens: int = typer.Option(40),
    sample: bool = typer.Option(False, help="sample (temperature 1) instead of greedy decoding"),
    seed: int = typer.Option(0, help="the same seed is used for every coefficient"),
    repetition_penalty: float = typer.Option(1.3),
    allow_other_model: bool = typer.Option(False, help="apply a vector made for another model of the same width"),
    dtype: str = typer.Option("float32"),
    device: str = typer.Option("cpu"),
) -> None:
    """Steered and unsteered completions side by side (same prompts, same seed)."""
    from ..steering.generate import steered_completions
    from ..steering.vector import SteeringVector, VectorFileError, VectorMismatchError

    try:
        vec = SteeringVector.load(vector)
    except VectorFileError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    lm = _load(model, dtype, device)
    try:
        with console.status("generating ..."):
            texts = steered_completions(
                lm,
                vec,
                prompt,
                [0.0, *coefficient],
                positions,
                allow_other_model,
                max_new_tokens=max_new_tokens,
                do_sample=sample,
                seed=seed,
                repetition_penalty=repetition_penalty,
            )
    except (VectorMismatchError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    decoding = f"sampled, seed {seed}" if sample else "greedy"
    print_side_by_side(texts, prompt, f"{vec.meta.get('method', 'vector')} at {', '.join(vec.sites)} ({decoding})")


@vectors_app.command("inspect")
def inspect(path: Path = typer.Argument(..., help="steering-vector file")) -> None:  # noqa: B008
    """Print a vector file's metadata and per-site shapes and norms."""
    from ..steering.vector import SteeringVector, VectorFileError

    try:
        console.print(SteeringVector.load(path).describe())
    except VectorFileError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc


pairs_app = typer.Typer(help="Contrast pairs.", no_args_is_help=True)
app.add_typer(pairs_app, name="pairs")


@pairs_app.command("generate")
def pairs_generate(
    concept: str = typer.Option(..., help="what the positive side shows, e.g. 'happiness' or 'formal language'"),
    n: int = typer.Option(256, help="number of pairs wanted"),
    out: Path = typer.Option(Path("pairs.jsonl"), help="jsonl file to write"),  # noqa: B008
    writer: str = typer.Option("local", help="local (a model loaded here) or endpoint (OpenAI-compatible)"),
    model: str = typer.Option("default", help="the local writer's model: " + MODEL_HELP),
    seed: int = typer.Option(0),
    batch_size: int = typer.Option(8),
    max_requests: int = typer.Option(0, help="give up after this many requests (0: 10 x n)"),
    overwrite: bool = typer.Option(False),
) -> None:
    """Write validated, de-duplicated contrast pairs for a concept with a language model."""
    import json

    from rich.progress import Progress

    from ..core.io import atomic_write_text
    from ..steering.synth import EndpointWriter, LocalWriter, generate_pairs

    if out.exists() and not overwrite:
        console.print(f"[red]error:[/red] {out} exists; pass --overwrite or choose another file")
        raise typer.Exit(2)
    try:
        write = EndpointWriter.from_env() if writer == "endpoint" else LocalWriter(_load(model, "float32", "cpu"))
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    if writer not in ("local", "endpoint"):
        raise typer.BadParameter(f"writer must be local or endpoint, got {writer!r}")
    with Progress(console=console) as progress:
        task = progress.add_task(f"pairs for {concept!r}", total=n)
        pairs, requests = generate_pairs(
            write,
            concept,
            n,
            seed,
            batch_size,
            max_requests or None,
            on_batch=lambda got, _: progress.update(task, completed=got),
        )
    rows = [{"positive": p.positive, "negative": p.negative, "concept": concept} for p in pairs]
    atomic_write_text(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    console.print(f"wrote {len(pairs)} pairs to {out} ({requests} requests)")
    if len(pairs) < n:
        console.print(
            f"[yellow]only {len(pairs)} of {n} replies passed validation; raise --max-requests or use a "
            "stronger writer (--writer endpoint)[/yellow]"
        )
        raise typer.Exit(1)

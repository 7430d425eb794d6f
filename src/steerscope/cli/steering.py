"""CLI: `steerscope extract`, `steerscope generate`, `steerscope vectors inspect / export / import`,
`steerscope pairs generate`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..methods import METHODS
from ._app import (
    HELP_MARKUP,
    MODEL_HELP,
    BatchSize,
    Device,
    DeviceMap,
    Dtype,
    Engine,
    MaxMemory,
    MaxNewTokens,
    Model,
    ModelOption,
    OutFile,
    Overwrite,
    Seed,
    TrustRemoteCode,
    _load,
    _load_vllm,
    app,
    console,
    print_side_by_side,
    refuse_existing,
)

vectors_app = typer.Typer(
    rich_markup_mode=HELP_MARKUP,
    help="Inspect steering-vector files; export and import llama.cpp control vectors.",
    no_args_is_help=True,
)
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
            raise ValueError(f"method options look like --option name=value, got {item!r}")
        key, value = item.split("=", 1)
        parsed[key.strip()] = _option_value(value.strip())
    return parsed


@app.command()
def extract(
    model: Model = "default",
    pairs: Annotated[str, typer.Option(help=PAIRS_HELP)] = "sentiment",
    split: Annotated[str, typer.Option(help="train, test or all (rows without a split count as train)")] = "train",
    n_pairs: Annotated[int, typer.Option(help="use the first N pairs (0: all)")] = 0,
    method: Annotated[
        str, typer.Option(help="a method that makes a vector file: " + ", ".join(VECTOR_METHODS))
    ] = "mean_diff",
    site: Annotated[list[str] | None, typer.Option(help="site(s) to read; repeat for several")] = None,
    read: Annotated[str, typer.Option(help="last (or answer, for A/B items), mean or max over tokens")] = "last",
    option: Annotated[
        list[str] | None, typer.Option(help="method option name=value, e.g. C=0.1 or variant=center")
    ] = None,
    batch_size: BatchSize = 8,
    seed: Seed = 0,
    out: OutFile = Path("vector.safetensors"),
    overwrite: Overwrite = False,
    dtype: Dtype = "float32",
    device: Device = "cpu",
    trust_remote_code: TrustRemoteCode = False,
    device_map: DeviceMap = "",
    max_memory: MaxMemory = "",
    engine: Engine = "hf",
) -> None:
    """Find a steering vector from contrast pairs and save it (safetensors + metadata)."""
    from ..methods import fit, get_method
    from ..steering.pairs import load_pairs
    from ..vllm.completions import check_engine

    check_engine(engine)

    spec = get_method(method)
    if not spec.vector:
        raise ValueError(f"{method} does not make a vector file; methods that do: {', '.join(VECTOR_METHODS)}")
    sites = site or ["resid_pre.10"]
    options = _parse_options(option or [])
    if n_pairs < 0:
        raise ValueError(f"--n-pairs must be 0 (all pairs) or a positive number, got {n_pairs}")
    if batch_size < 1:
        raise ValueError(f"--batch-size must be 1 or more, got {batch_size}")
    refuse_existing(out, overwrite)
    contrast = load_pairs(pairs, split)
    if n_pairs > len(contrast):
        raise ValueError(f"asked for {n_pairs} pairs but {pairs} ({split}) has {len(contrast)}; lower --n-pairs")
    contrast = contrast[: n_pairs or None]
    if engine == "vllm" and not spec.reads:
        raise ValueError(f"{method} reads activations position by position; extract it with --engine hf")
    lm = (
        _load_vllm(model, dtype, device_map, max_memory)
        if engine == "vllm"
        else _load(model, dtype, device, trust_remote_code, device_map, max_memory)
    )
    kwargs = {"batch_size": batch_size, "seed": seed, **options}
    if spec.reads:  # a method that reads every position (actadd) takes no read
        kwargs["read"] = read
    with console.status(f"{method} on {len(contrast)} pairs at {', '.join(sites)} ..."):
        try:
            vector = fit(method, lm, contrast, sites, **kwargs)
        except TypeError as exc:  # an option the method's fit function does not take
            raise ValueError(f"{method} cannot take the options {sorted(options)}: {exc}") from exc
        finally:
            if engine == "vllm":
                lm.close()
    vector.meta["dataset"] = f"{pairs}:{split}"
    vector.meta["engine"] = engine
    vector.save(out)
    console.print(vector.describe())
    console.print(f"saved {out}")


@app.command()
def generate(
    vector: Annotated[Path, typer.Option(help="steering-vector file")],
    model: Model = "default",
    coefficient: Annotated[list[float] | None, typer.Option(help="coefficient(s); unsteered is always shown")] = None,
    positions: Annotated[str, typer.Option(help="all, prompt, front, last_prompt or generated")] = "all",
    prompt: Annotated[list[str] | None, typer.Option(help="prompt(s) to complete; repeat for several")] = None,
    max_new_tokens: MaxNewTokens = 40,
    sample: Annotated[bool, typer.Option(help="sample (temperature 1) instead of greedy decoding")] = False,
    seed: Annotated[int, typer.Option(help="the same seed is used for every coefficient")] = 0,
    repetition_penalty: Annotated[float, typer.Option(help="1 for none; above 1 discourages repeats")] = 1.3,
    allow_other_model: Annotated[
        bool, typer.Option(help="apply a vector made for another model of the same width")
    ] = False,
    dtype: Dtype = "float32",
    device: Device = "cpu",
    trust_remote_code: TrustRemoteCode = False,
    device_map: DeviceMap = "",
    max_memory: MaxMemory = "",
    engine: Engine = "hf",
    json_lines: Annotated[
        bool, typer.Option("--json", help="print JSON lines (prompt, coefficient, text, engine, model), nothing else")
    ] = False,
) -> None:
    """Steered and unsteered completions side by side (same prompts, same seed)."""
    import json
    import sys

    from ..core.validate import finite, whole
    from ..steering.generate import coefficient_label
    from ..steering.vector import SteeringVector
    from ..vllm.completions import check_engine, steered_completions

    whole(max_new_tokens, "--max-new-tokens", 1)  # numbers first: before any file is read or model loaded
    finite(repetition_penalty, "--repetition-penalty", 0.01, 100.0)
    vec = SteeringVector.load(vector)
    prompts = prompt or ["I think that"]
    coefficients = [0.0, *(coefficient or [4.0])]
    if json_lines:  # stdout holds the JSON lines only; progress and notes go to stderr
        console.file = sys.stderr
    if check_engine(engine) == "vllm":
        model_in = _load_vllm(model, dtype, device_map, max_memory)
    else:
        model_in = _load(model, dtype, device, trust_remote_code, device_map, max_memory)
    with console.status("generating ..."):
        texts = steered_completions(
            model_in,
            vec,
            prompts,
            coefficients,
            positions,
            allow_other_model,
            engine=engine,
            max_new_tokens=max_new_tokens,
            do_sample=sample,
            seed=seed,
            repetition_penalty=repetition_penalty,
        )
    if engine == "vllm":
        model_in.close()  # one in-process vLLM engine at a time
    if json_lines:
        for c in dict.fromkeys(coefficients):
            for p, text in zip(prompts, texts[coefficient_label(c)], strict=True):
                row = {"prompt": p, "coefficient": c, "text": text, "engine": engine, "model": model_in.name}
                print(json.dumps(row, ensure_ascii=False))
        return
    decoding = f"sampled, seed {seed}" if sample else "greedy"
    print_side_by_side(texts, prompts, f"{vec.meta.get('method', 'vector')} at {', '.join(vec.sites)} ({decoding})")


@vectors_app.command("inspect")
def inspect(path: Annotated[Path, typer.Argument(help="steering-vector file")]) -> None:
    """Print a vector file's metadata and per-site shapes and norms."""
    from ..steering.vector import SteeringVector

    console.print(SteeringVector.load(path).describe(), markup=False)


@vectors_app.command("export")
def vectors_export(
    vector: Annotated[Path, typer.Argument(help="steering-vector file (.safetensors)")],
    out: Annotated[Path, typer.Option(help="control-vector file to write (an existing one needs --overwrite)")],
    fmt: Annotated[str, typer.Option("--format", help="gguf: a llama.cpp / repeng control vector")] = "gguf",
    model: ModelOption = "default",
    overwrite: Overwrite = False,
    allow_other_model: Annotated[bool, typer.Option(help="export a vector made for another model")] = False,
    trust_remote_code: TrustRemoteCode = False,
) -> None:
    """Write a vector as a llama.cpp control vector (direction.i = resid_post.i = resid_pre.i+1)."""
    from ..steering.llamacpp import check_exportable, control_layer, export_control_vector
    from ..steering.vector import SteeringVector

    if fmt != "gguf":
        raise ValueError(f"--format must be gguf (a llama.cpp control vector), got {fmt!r}")
    refuse_existing(out, overwrite)
    vec = SteeringVector.load(vector)
    check_exportable(vec)  # before the model is loaded
    lm = _load(model, "float32", "cpu", trust_remote_code)
    export_control_vector(vec, out, lm, overwrite=overwrite, allow_other_model=allow_other_model)
    for site in vec.sites:
        layer = control_layer(site, lm.n_layers, lm.adapter.parallel, bool(lm.adapter.pos_embed))
        console.print(f"{site} -> direction.{layer} (added after llama.cpp layer {layer})", markup=False)
    console.print(
        f"saved {out}; in llama.cpp `--control-vector-scaled {out}:C` is steerscope's coefficient C at every "
        "position (--positions all)",
        markup=False,
    )


@vectors_app.command("import")
def vectors_import(
    file: Annotated[Path, typer.Argument(help="llama.cpp or repeng control vector (.gguf)")],
    model: ModelOption = "default",
    out: Annotated[
        Path | None, typer.Option(help="steering-vector file to write (default: FILE with .safetensors)")
    ] = None,
    overwrite: Overwrite = False,
    trust_remote_code: TrustRemoteCode = False,
) -> None:
    """Read a control vector (direction.i -> resid_post.i), checked against MODEL, into a steerscope vector file."""
    from ..steering.llamacpp import import_control_vector, read_control_vector

    target = out or file.with_suffix(".safetensors")
    if target.resolve() == file.resolve():
        raise ValueError(f"--out {target} is the control-vector file itself; choose another --out")
    refuse_existing(target, overwrite)
    read_control_vector(file)  # a file that is not a control vector is refused before the model is loaded
    lm = _load(model, "float32", "cpu", trust_remote_code)
    vec = import_control_vector(file, lm)
    vec.save(target)
    console.print(vec.describe(), markup=False)
    console.print(f"saved {target}")


@vectors_app.command("restamp")
def vectors_restamp(
    vector: Annotated[Path, typer.Argument(help="steering-vector file written before the fingerprint scheme changed")],
    model: ModelOption = "default",
    out: Annotated[Path | None, typer.Option(help="file to write (default: replace VECTOR, with --overwrite)")] = None,
    overwrite: Overwrite = False,
    trust_remote_code: TrustRemoteCode = False,
) -> None:
    """Stamp a vector file with MODEL's fingerprint after checking the model's name, width and sites."""
    from ..steering.vector import SteeringVector

    target = out or vector
    refuse_existing(target, overwrite)
    vec = SteeringVector.load(vector)
    lm = _load(model, "float32", "cpu", trust_remote_code)
    stamped = vec.restamp(lm)
    stamped.save(target)
    console.print(f"saved {target}: fingerprint {stamped.meta['restamped_from']} -> {stamped.meta['fingerprint']}")


pairs_app = typer.Typer(rich_markup_mode=HELP_MARKUP, help="Contrast pairs.", no_args_is_help=True)
app.add_typer(pairs_app, name="pairs")


@pairs_app.command("generate")
def pairs_generate(
    concept: Annotated[str, typer.Option(help="what the positive side shows, e.g. 'happiness' or 'formal language'")],
    n: Annotated[int, typer.Option(help="number of pairs wanted")] = 256,
    out: OutFile = Path("pairs.jsonl"),
    writer: Annotated[str, typer.Option(help="local (a model loaded here) or endpoint (OpenAI-compatible)")] = "local",
    model: Annotated[str, typer.Option(help="the local writer's model: " + MODEL_HELP)] = "default",
    seed: Seed = 0,
    batch_size: Annotated[int, typer.Option(help="prompts per request batch")] = 8,
    max_requests: Annotated[int, typer.Option(help="give up after this many requests (0: 10 x n)")] = 0,
    overwrite: Overwrite = False,
    trust_remote_code: TrustRemoteCode = False,
) -> None:
    """Write validated, de-duplicated contrast pairs for a concept with a language model."""
    from ..core.runs import progress_bar
    from ..steering.pairs import write_pairs
    from ..steering.synth import EndpointWriter, LocalWriter, generate_pairs

    if writer not in ("local", "endpoint"):
        raise ValueError(f"--writer must be local or endpoint, got {writer!r}")
    for flag, value, low in (("--n", n, 1), ("--batch-size", batch_size, 1), ("--max-requests", max_requests, 0)):
        if value < low:
            raise ValueError(f"{flag} must be {low} or more{' (0: 10 x n)' if low == 0 else ''}, got {value}")
    refuse_existing(out, overwrite)
    write = (
        EndpointWriter.from_env()
        if writer == "endpoint"
        else LocalWriter(_load(model, "float32", "cpu", trust_remote_code))
    )
    with progress_bar(console) as progress:
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
    write_pairs(out, pairs, concept=concept)
    console.print(f"wrote {len(pairs)} pairs to {out} ({requests} requests)")
    if len(pairs) < n:
        console.print(
            f"[yellow]only {len(pairs)} of {n} replies passed validation; raise --max-requests or use a "
            "stronger writer (--writer endpoint)[/yellow]"
        )
        raise typer.Exit(1)

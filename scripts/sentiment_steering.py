"""Does a sentiment mean_diff vector turn completions of held-out neutral and negative prompts positive?

Extracts mean_diff from the first N training pairs of the built-in sentiment set at one site, completes
the held-out prompts (src/steerscope/data/sentiment_prompts.json) unsteered and at several coefficients
(greedy decoding, same settings for all), and prints the share of completions VADER scores positive
(compound >= 0.05), with a bootstrap interval over prompts.
Usage: python scripts/sentiment_steering.py [--site resid_pre.10] [--n-pairs 64] [--coefficients 2,4,8]
"""

from __future__ import annotations

import argparse
import json
from importlib import resources

import numpy as np

from steerscope import load_model
from steerscope.evaluate.scorers import sentiment_compound
from steerscope.evaluate.stats import bootstrap_mean_ci
from steerscope.steering.generate import steered_completions
from steerscope.steering.methods import mean_diff
from steerscope.steering.pairs import load_pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--site", default="resid_pre.10")
    parser.add_argument("--n-pairs", type=int, default=64)
    parser.add_argument("--coefficients", default="2,4,8")
    parser.add_argument("--max-new-tokens", type=int, default=30)
    args = parser.parse_args()
    lm = load_model(args.model)
    prompts = json.loads((resources.files("steerscope") / "data" / "sentiment_prompts.json").read_text())
    texts = prompts["neutral"] + prompts["negative"]
    groups = ["neutral"] * len(prompts["neutral"]) + ["negative"] * len(prompts["negative"])
    vector = mean_diff(lm, load_pairs("sentiment", "train")[: args.n_pairs], [args.site])
    coefficients = [0.0, *(float(c) for c in args.coefficients.split(","))]
    out = steered_completions(
        lm, vector, texts, coefficients, max_new_tokens=args.max_new_tokens, repetition_penalty=1.3
    )
    print(
        f"{lm.name}: mean_diff from {args.n_pairs} pairs at {args.site} (norm {vector.meta['norms'][args.site]:.2f}); "
        f"{len(texts)} held-out prompts, greedy, {args.max_new_tokens} new tokens; VADER compound >= 0.05"
    )
    for label, completions in out.items():
        positive = np.asarray([s >= 0.05 for s in sentiment_compound(completions)], dtype=float)
        by_group = {g: positive[[i for i, x in enumerate(groups) if x == g]].mean() for g in ("neutral", "negative")}
        lo, hi = bootstrap_mean_ci(positive)
        print(
            f"  {label:>14}: positive {positive.mean():.2f} [{lo:.2f}, {hi:.2f}]  "
            f"(neutral prompts {by_group['neutral']:.2f}, negative prompts {by_group['negative']:.2f})"
        )
        print(f"{'':>18}e.g. {texts[12]!r} -> {completions[12].strip()[:90]!r}")


if __name__ == "__main__":
    main()

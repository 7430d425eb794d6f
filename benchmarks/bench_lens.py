"""Cost of the logit lens over every layer, against plain forward passes of the same batch.

Side by side in one run, alternating: a bare forward (with logits) and the logit lens as it runs
(`depth.lens.lens_batch`: one forward reading every resid_post.l, then one final norm + unembedding per layer
over the whole batch, metrics included). Prints the median paired ratio lens / ((L+1) x forward), by wall time
and by this process's CPU time (barely moved by other jobs on shared cores: use --threads 1 there); the issue's
expectation: one forward plus L unembeddings, far below L+1 forwards. With --tuned-steps N it also times N
tuned-lens training steps (one batch each) and prints seconds per step against one forward.
Usage: python benchmarks/bench_lens.py [--model default] [--batch 8] [--seq-len 64] [--threads 1] [--tuned-steps 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from steerscope import load_model
from steerscope.core.corpus import token_sequences
from steerscope.core.hooks import run_forward
from steerscope.depth.lens import lens_batch
from steerscope.depth.tuned_lens import train_tuned_lens


def _seconds(fn) -> tuple[float, float]:
    """Wall time and this process's CPU time of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--tuned-steps", type=int, default=0, help="also time this many tuned-lens training steps")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    lm = load_model(args.model)
    ids = token_sequences(lm.tokenizer, "wikipedia", args.batch, args.seq_len)
    vocab = lm.model.get_output_embeddings().weight.shape[0]
    print(
        f"model {lm.name}: {lm.n_layers} layers, d_model {lm.d_model}, vocabulary {vocab}; "
        f"batch {args.batch} x {args.seq_len} tokens; torch threads {torch.get_num_threads()}"
    )

    def forward():
        with torch.no_grad():
            run_forward(lm, ids)

    forward()
    passes = lm.n_layers + 1
    ratios, forwards, lenses = [], [], []
    for _ in range(args.repeats):  # alternate: forward, lens, forward
        before = _seconds(forward)
        lens = _seconds(lambda: lens_batch(lm, ids))
        after = _seconds(forward)
        one = tuple(min(b, a) for b, a in zip(before, after, strict=True))
        forwards.append(one)
        lenses.append(lens)
        ratios.append(tuple(lens[i] / (passes * one[i]) for i in (0, 1)))
    for i, clock in enumerate(("wall", "CPU time")):
        print(
            f"{clock}: forward {statistics.median(f[i] for f in forwards):.3f} s, logit lens over {lm.n_layers} layers "
            f"{statistics.median(x[i] for x in lenses):.3f} s; lens / ((L+1) x forward), median of paired ratios: "
            f"{statistics.median(r[i] for r in ratios):.3f}; lens / forward: "
            f"{statistics.median(x[i] / f[i] for x, f in zip(lenses, forwards, strict=True)):.2f}"
        )
    if args.tuned_steps:
        with tempfile.TemporaryDirectory() as tmp:
            state = Path(tmp) / "state.safetensors"
            took = _seconds(lambda: train_tuned_lens(lm, [ids], args.tuned_steps, state, show_progress=False))
        forward_s = statistics.median(f[0] for f in forwards)
        print(
            f"tuned lens: {args.tuned_steps} training steps of {args.batch} x {args.seq_len} tokens took "
            f"{took[0]:.1f} s wall ({took[1]:.1f} s CPU): {took[0] / args.tuned_steps:.2f} s per step = "
            f"{took[0] / args.tuned_steps / forward_s:.1f} forwards"
        )


if __name__ == "__main__":
    main()

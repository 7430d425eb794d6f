"""The vLLM engine, measured side by side in one run on the embedded default model (fp32, greedy, one thread).

1. vLLM steered / vLLM bare throughput, batch 64 x 64 new tokens (target >= 0.95);
2. vLLM steered / steerscope's HF steered `generate`, batch 64 x 64 (target >= 2x on this CPU) and batch 8 x 64;
3. a mixed batch (6 different vectors x 16 prompts) in one call vs 6 separate calls;
4. reading 256 contrast pairs (mean_diff's activations) through vLLM vs steerscope's HF early-stop extraction.

Each comparison alternates its two variants (which one runs first alternates too) and reports the median of the
paired ratios and of each variant's time. Run it in the vLLM environment, with the machine as idle as it gets:
OMP_NUM_THREADS=1 .venv-vllm/bin/python benchmarks/bench_vllm.py [--repeats 3]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

WORDS = [
    "river",
    "city",
    "music",
    "garden",
    "winter",
    "market",
    "science",
    "letter",
    "harbour",
    "forest",
    "station",
    "painting",
]


def prompts(n: int) -> list[str]:
    return [f"The {WORDS[i % len(WORDS)]} near the {WORDS[(i * 5 + 3) % len(WORDS)]} was" for i in range(n)]


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def paired(name: str, a, b, repeats: int, work: float, unit: str = "tok/s") -> float:
    """Median of b/a throughput ratios over alternating runs (a, b: callables doing `work` units each)."""
    a(), b()  # warm-up
    ta, tb, ratios = [], [], []
    for i in range(repeats):
        if i % 2:
            y = timed(b)
            x = timed(a)
        else:
            x = timed(a)
            y = timed(b)
        ta.append(x)
        tb.append(y)
        ratios.append(x / y)
    ratio = statistics.median(ratios)
    print(
        f"{name}: {work / statistics.median(ta):8.1f} vs {work / statistics.median(tb):8.1f} {unit}; "
        f"paired ratio (second / first throughput) median {ratio:.3f} (all: {', '.join(f'{r:.3f}' for r in ratios)})",
        flush=True,
    )
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--parts", default="1,2,3,4", help="which comparisons to run (1: steered/bare, 2: vs HF, ...)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    import steerscope as ss
    from steerscope.vllm import Steer, VllmEngine

    print(f"load average before: {os.getloadavg()}; threads: torch 1, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}")
    lm = ss.load_model("default")
    engine = VllmEngine("default")
    new = args.new_tokens
    g = torch.Generator().manual_seed(0)
    vecs = [torch.randn(576, generator=g) for _ in range(6)]
    vec = ss.SteeringVector({"resid_pre.10": vecs[0] / vecs[0].norm() * 8})

    def vllm_run(batch: list[str], steer):  # exactly `new` tokens per prompt on both engines (EOS ignored)
        def run():
            out = engine.generate(batch, steering=steer, max_tokens=new, ignore_eos=True)
            assert all(len(c.token_ids) == new for c in out)

        return run

    def hf_run(batch: list[str]):
        def run():
            enc = lm.tokenize(batch)
            with vec.apply(lm, 1.0), torch.no_grad():
                out = lm.model.generate(
                    **enc,
                    max_new_tokens=new,
                    min_new_tokens=new,
                    do_sample=False,
                    pad_token_id=lm.tokenizer.pad_token_id,
                )
            assert out.shape[1] - enc["input_ids"].shape[1] == new

        return run

    b64, b8 = prompts(64), prompts(8)
    steer = Steer(vec, 1.0)
    parts = set(args.parts.split(","))
    if "1" in parts:
        paired(
            "1. batch 64: vLLM bare -> vLLM steered", vllm_run(b64, None), vllm_run(b64, steer), args.repeats, 64 * new
        )
    if "2" in parts:
        paired("2a. batch 64: HF steered -> vLLM steered", hf_run(b64), vllm_run(b64, steer), args.repeats, 64 * new)
        paired("2b. batch 8: HF steered -> vLLM steered", hf_run(b8), vllm_run(b8, steer), args.repeats, 8 * new)

    p16 = prompts(16)
    mixed = [Steer({"resid_pre.10": v / v.norm() * 8}, 1.0) for v in vecs]

    def one_call():
        engine.generate(p16 * 6, steering=[mixed[i // 16] for i in range(96)], max_tokens=32, ignore_eos=True)

    def six_calls():
        for s in mixed:
            engine.generate(p16, steering=s, max_tokens=32, ignore_eos=True)

    if "3" in parts:
        paired("3. 6 vectors x 16 prompts: 6 calls -> 1 mixed call", six_calls, one_call, args.repeats, 96 * 32)

    pairs = ss.load_pairs("sentiment")[:256]
    if "4" in parts:
        paired(
            "4. 256 pairs mean_diff at resid_pre.10: HF early stop -> vLLM",
            lambda: ss.fit("mean_diff", lm, pairs, ["resid_pre.10"], batch_size=32),
            lambda: ss.fit("mean_diff", engine, pairs, ["resid_pre.10"], batch_size=64),
            args.repeats,
            512,
            unit="texts/s",
        )
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()

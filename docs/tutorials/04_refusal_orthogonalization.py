# %% [markdown]
# # A refusal direction, ablated at inference time and baked into the weights
#
# The difference of mean activations between harmful and harmless instructions (Arditi et al.), removed from the
# residual stream in two ways: at inference time with `project_out` (every residual write projected), and for
# good with `orthogonalize` (every matrix that writes into the stream edited), exported as a Hugging Face folder
# and loaded back. The two must agree up to floating-point error. `steerscope refusal MODEL` runs the whole study
# (direction selection over sites and positions, refusal and side-effect measurements); this tutorial shows the
# parts by hand. SmolLM2-135M barely refuses, so the point here is the equality, not a change in behaviour.

# %%
import os
import tempfile
from pathlib import Path

import torch

import steerscope as ss
from steerscope.core.weights import export, orthogonalize
from steerscope.refusal.instructions import chat_prompts, load_instructions

torch.set_num_threads(1)
QUICK = os.environ.get("STEERSCOPE_QUICK") == "1"
N = 8 if QUICK else 32

lm = ss.load_model("default")
harmful = chat_prompts(lm, load_instructions("harmful", "train")[:N])
harmless = chat_prompts(lm, load_instructions("harmless", "train")[:N])
print(harmful[0])

# %% [markdown]
# The direction: the mean at the last prompt token of harmful minus harmless, at `resid_pre.18`
# (the site `steerscope refusal` selects on this model).

# %%
site = "resid_pre.18"
mean_harmful = ss.mean_activations(lm, harmful, [site], positions="last")[site]
mean_harmless = ss.mean_activations(lm, harmless, [site], positions="last")[site]
direction = (mean_harmful - mean_harmless).float()
print("norm of the difference:", round(direction.norm().item(), 3))

# %% [markdown]
# Inference-time ablation: with `project_out`, no residual write holds the direction.

# %%
probe = lm.tokenize(harmful[:4] + harmless[:4])
with torch.no_grad():
    clean = lm.model(**probe).logits
    with ss.project_out(lm, direction):
        ablated = lm.model(**probe).logits
print("ablation moves the logits by up to", round((ablated - clean).abs().max().item(), 3))

# %% [markdown]
# Orthogonalized weights: edit a copy of the model, export it, load the folder back as any Hugging Face model.
# Its plain forward pass equals the inference-time ablation.

# %%
edited = ss.load_model("default")
record = orthogonalize(edited, direction)
out = export(edited, Path(tempfile.mkdtemp()) / "smollm2-ablated", record)
print(record, "->", out.name, sorted(p.name for p in out.iterdir())[:4])
reloaded = ss.load_model(str(out))
with torch.no_grad():
    baked = reloaded.model(**probe).logits
difference = (baked - ablated).abs().max().item()
same_top1 = (baked.argmax(-1) == ablated.argmax(-1)).float().mean().item()
print(f"max |orthogonalized - ablated| logit difference: {difference:.2e} (logits reach {clean.abs().max():.0f})")
print(f"same top-1 token at {same_top1:.0%} of positions")
assert difference < 1e-2 and same_top1 == 1.0  # fp32 rounding through 30 layers, nothing more

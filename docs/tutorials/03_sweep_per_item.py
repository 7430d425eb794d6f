# %% [markdown]
# # A small sweep: who the vector fails, and its report
#
# A sentiment sweep on the default model: a mean-difference vector at two sites and two coefficients, the
# coefficient and site chosen on validation prompts, then measured on held-out test prompts next to the unsteered
# model. Besides the share of positive completions with its interval, every sweep now records each prompt's own
# effect (steered minus unsteered score): `per_item.csv`, the anti-steerable fraction (prompts pushed the wrong
# way) with its interval, and a histogram. (`STEERSCOPE_QUICK=1`, set by the tests, uses fewer prompts and tokens.)

# %%
import csv
import json
import os
import tempfile
from importlib import resources
from pathlib import Path

import torch
from IPython.display import Image, display

import steerscope as ss
from steerscope.steering.tasks import BUILTIN
from steerscope.sweep.config import GenerationSpec, SideEffectSpec, SweepConfig
from steerscope.sweep.report import sweep_report
from steerscope.sweep.runner import run_sweep

torch.set_num_threads(1)
QUICK = os.environ.get("STEERSCOPE_QUICK") == "1"
N_PROMPTS, TOKENS = (8, 12) if QUICK else (24, 30)

work = Path(tempfile.mkdtemp())
openings = json.loads((resources.files("steerscope") / "data" / "sentiment_prompts.json").read_text())
prompts = openings["neutral"][: N_PROMPTS // 2] + openings["negative"][: N_PROMPTS // 2]
(work / "prompts.json").write_text(json.dumps(prompts))
config = SweepConfig(
    sites=["resid_pre.7", "resid_pre.10"],
    coefficients=[4.0, 8.0],
    n_pairs=[32],
    methods=["mean_diff"],
    baselines=["unsteered"],
    datasets=["sentiment"],
    custom_datasets={"sentiment": {**BUILTIN["sentiment"], "prompts": str(work / "prompts.json")}},
    n_boot=200,
    generation=GenerationSpec(max_new_tokens=TOKENS),
    side_effects=SideEffectSpec(enabled=False),
)
lm = ss.load_model("default")
results = run_sweep(config, work / "sweep", lm=lm)
report = sweep_report(results)
print(sorted(p.name for p in report.iterdir()))

# %% [markdown]
# The summary: the chosen setting on the test prompts, next to the unsteered model.

# %%
data = json.loads((report / "report.json").read_text())
for row in data["summary"]:
    print({k: row.get(k) for k in ("method", "site", "coefficient", "positive", "positive_lo", "positive_hi", "fluency_cost")})
for row in data["baselines"]:
    print({k: row.get(k) for k in ("baseline", "positive", "positive_lo", "positive_hi")})

# %% [markdown]
# Per prompt: the effect is the steered minus the unsteered score (1 / 0 for "reads as positive", and the VADER
# compound beside it). A prompt is anti-steerable when its effect is below zero.

# %%
with open(report / "anti_steerable.csv") as f:
    for row in csv.DictReader(f):
        print({k: row[k] for k in ("site", "coefficient", "anti_steerable", "anti_steerable_lo", "anti_steerable_hi",
                                    "tied", "score_wrong_way", "n_items")})
with open(report / "per_item.csv") as f:
    items = list(csv.DictReader(f))
wrong = [r for r in items if float(r["effect_score"] or 0) < 0]
print(f"{len(items)} prompt x setting rows; pushed the wrong way on VADER:", [r["text"] for r in wrong][:5])
for png in sorted(report.glob("*per_item*.png")):
    display(Image(filename=str(png)))

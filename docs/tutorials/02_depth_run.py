# %% [markdown]
# # Depth instruments, run and read back from the run folder
#
# One `steerscope depth` run on the default model (here through its Python API, `run_instruments`): the logit
# lens at every layer, each sublayer's contribution, layer skipping with Csordas's skip matrix, norm growth and the
# effective layer horizon, with Hu et al.'s three effective depths next to the horizon k*. Everything lands in one
# resumable run folder; this tutorial reads the results back from its files, as a notebook user would later.
# (`STEERSCOPE_QUICK=1`, set by the tests, uses a few short sequences and a coarse horizon.)

# %%
import csv
import json
import os
import tempfile
from pathlib import Path

import torch
from IPython.display import Image, display

import steerscope as ss
from steerscope.depth.instruments import InstrumentPlan, run_instruments
from steerscope.depth.records import DepthRun, TextSpec

torch.set_num_threads(1)
QUICK = os.environ.get("STEERSCOPE_QUICK") == "1"
text = TextSpec(n=4, seq_len=32, batch_size=4) if QUICK else TextSpec(n=16, seq_len=64)

lm = ss.load_model("default")
out = Path(tempfile.mkdtemp()) / "depth"
plan = InstrumentPlan(
    instruments=("lens", "contributions", "skipping", "norms", "horizon"),
    swaps=False,
    horizon_ks=[1, 8, 16, 24, 28, 30] if QUICK else None,
)
folder, rows = run_instruments(DepthRun(models=["default"], out=out, text=text, n_boot=200), plan, lm=lm)
print(folder, sorted(p.name for p in folder.iterdir()))

# %% [markdown]
# The logit lens: `lm_head(final_norm(resid_post.l))` against the model's own next-token distribution. At the last
# layer the lens is the model (KL 0).

# %%
with open(folder / "default" / "lens.csv") as f:
    lens = list(csv.DictReader(f))
for row in lens[:: max(1, len(lens) // 6)] + [lens[-1]]:
    print(f"layer {row['layer']:>2}: KL {float(row['kl']):6.2f} nats, top-1 {float(row['top1']):.2f}, "
          f"top-5 overlap {float(row['top5']):.2f}")
display(Image(filename=str(folder / "default" / "lens.png")))

# %% [markdown]
# Skipping one layer at a time: which layers does the output depend on?

# %%
with open(folder / "default" / "skip.csv") as f:
    skips = sorted(csv.DictReader(f), key=lambda r: -float(r["delta_ce"]))
print("most costly layers to skip:", [(r["layer"], round(float(r["delta_ce"]), 2)) for r in skips[:5]])
display(Image(filename=str(folder / "default" / "skipping.png")))

# %% [markdown]
# Effective depth by Hu et al.'s three rules, next to the horizon k* (the smallest window k whose outputs are
# unchanged, delta CE < 0.1 nats), each as layers and as a fraction of the depth L; the paper's row is beside ours.

# %%
with open(folder / "effective-depth.csv") as f:
    for row in csv.DictReader(f):
        print(row)
summary = json.loads((folder / "summary.json").read_text())
print({k: v for k, v in summary["rows"][0].items() if k.startswith(("effective", "k_star", "growth"))})

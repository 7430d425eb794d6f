"""Effective depth by Hu et al.'s three rules (2512.14064), each a pure function of a per-layer curve.

Each rule picks a layer index l (0-based) and reports the effective depth d = l + 1, the number of layers
up to and including it (the lens at `resid_post.{l}` reads the stream after l + 1 layers):
- cosine: the last layer whose sublayer cosine with the residual it reads (depth/contributions.py) has another
  sign than the layer before it, over the attention and the MLP curves (the later of the two); after it every
  layer keeps the sign of its predecessor (for the models the paper reads: amplifying what is there);
- kl: the first layer after the maximum of the logit lens's KL(final || lens) whose KL is below half that
  maximum;
- top5: the first layer whose logit-lens top-5 overlap with the model exceeds 0.3.
A rule that no layer meets gives None. The paper's numbers for Qwen2.5-1.5B-Instruct: 16 / 21 / 23 of 28.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

RULES = ("cosine", "kl", "top5")

#: Hu et al. 2512.14064 for Qwen2.5-1.5B-Instruct, as the issue quotes them: three definitions, of 28 layers
PAPER: dict[str, Any] = {"model": "Qwen2.5-1.5B-Instruct (Hu et al. 2512.14064)", "layers": 28, "depths": [16, 21, 23]}


def last_sign_change(curve: Sequence[float]) -> int | None:
    """The last layer l >= 1 whose value has another sign than layer l-1's (zero counts as its own sign)."""
    signs = np.sign(np.asarray(curve, dtype=np.float64))
    changes = [n for n in range(1, len(signs)) if signs[n] != signs[n - 1]]
    return changes[-1] if changes else None


def depth_by_cosine(*curves: Sequence[float]) -> int | None:
    """Effective depth by the cosine rule over one or more sublayer cosine curves (the latest change wins)."""
    found = [c for c in (last_sign_change(curve) for curve in curves) if c is not None]
    return max(found) + 1 if found else None


def depth_by_kl(kl: Sequence[float]) -> int | None:
    """Effective depth: the first layer after the KL curve's maximum whose KL is below half that maximum."""
    values = np.asarray(kl, dtype=np.float64)
    if values.size == 0:
        return None
    peak = int(values.argmax())
    below = [n for n in range(peak + 1, len(values)) if values[n] < values[peak] / 2]
    return below[0] + 1 if below else None


def depth_by_top5(top5: Sequence[float], threshold: float = 0.3) -> int | None:
    """Effective depth: the first layer whose top-5 overlap exceeds `threshold`."""
    above = [n for n, v in enumerate(top5) if v > threshold]
    return above[0] + 1 if above else None


def effective_depths(contribution_rows: list[dict] | None, lens_rows: list[dict] | None, n_layers: int) -> dict:
    """The three effective depths (and / L) from per-layer contribution and logit-lens rows; None where absent."""
    depths: dict[str, int | None] = {rule: None for rule in RULES}
    by_sublayer: dict[str, int | None] = {}
    if contribution_rows:
        curves = {part: [r[f"{part}_cosine"] for r in contribution_rows] for part in ("attn", "mlp")}
        depths["cosine"] = depth_by_cosine(*curves.values())
        by_sublayer = {part: depth_by_cosine(curve) for part, curve in curves.items()}
    if lens_rows:
        depths["kl"] = depth_by_kl([r["kl"] for r in lens_rows])
        depths["top5"] = depth_by_top5([r["top5"] for r in lens_rows])
    return {
        "layers": n_layers,
        "depths": depths,
        "over_layers": {k: None if v is None else v / n_layers for k, v in depths.items()},
        "cosine_by_sublayer": by_sublayer,
        "paper": PAPER,
    }

"""Sublayer contributions: how large each sublayer's write is next to the residual it reads, and its direction.

For every sublayer s (attention, MLP) of every layer, with x the residual the sublayer reads (`attn_in.{n}`,
`mlp_in.{n}`; in parallel-residual models both read `resid_pre.{n}`) and o what it adds to the stream
(`attn_out.{n}`, `mlp_out.{n}`, after the post-norm in sandwich-norm models), per token:
- ratio = ||o|| / ||x||;
- cosine = <o, x> / (||o|| ||x||): negative erases what the stream holds, near 0 writes something new,
  positive amplifies it (Hu et al. 2512.14064; Csordas et al. 2505.13898 compare outputs with the stream too).
The layer as a whole (o_attn + o_mlp = resid_post - resid_pre, against resid_pre) gets the same two numbers.
Each is a mean over positions 1..T-1 (position 0 excluded) per sequence, then over sequences with a
bootstrap interval.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from ..core.hooks import read, run_forward
from ..core.models import LoadedModel
from ..core.sites import site_name
from ..evaluate.stats import bootstrap_mean_ci

PARTS = ("attn", "mlp", "layer")
_PAIRS = {"attn": ("attn_in", "attn_out"), "mlp": ("mlp_in", "mlp_out"), "layer": ("resid_pre", "resid_post")}


def ratio_and_cosine(reads: Tensor, writes: Tensor) -> tuple[Tensor, Tensor]:
    """Per-sequence mean over positions >= 1 of ||w|| / ||r|| and cos(w, r) ([B, T, d] each -> [B], float64)."""
    r, w = reads[:, 1:].double(), writes[:, 1:].double()
    r_norm, w_norm = r.norm(dim=-1), w.norm(dim=-1)
    ratio = w_norm / r_norm.clamp_min(1e-30)
    cosine = (r * w).sum(-1) / (r_norm * w_norm).clamp_min(1e-30)
    return ratio.mean(-1).cpu(), cosine.mean(-1).cpu()


def contributions_batch(lm: LoadedModel, ids: Tensor) -> dict[str, list[list[float]]]:
    """Per-sequence ratio and cosine of every part of every layer: keys '{part}_ratio', '{part}_cosine', [L][B]."""
    L = lm.n_layers
    pending: dict[str, Tensor] = {}
    values: dict[tuple[str, int], tuple[Tensor, Tensor]] = {}
    partner = {}
    for part, (src, dst) in _PAIRS.items():
        for n in range(L):
            partner[site_name(src, n)] = (part, n, site_name(dst, n), True)
            partner[site_name(dst, n)] = (part, n, site_name(src, n), False)

    def reduce(name: str, act: Tensor) -> None:  # keeps a site only until its partner arrives
        part, n, other, is_read = partner[name]
        if other not in pending:
            pending[name] = act
            return
        mate = pending.pop(other)
        reads, writes = (act, mate) if is_read else (mate, act)
        if part == "layer":  # what the layer adds: resid_post - resid_pre
            writes = writes - reads
        values[(part, n)] = ratio_and_cosine(reads, writes)

    with torch.no_grad(), read(lm, list(partner), reduce=reduce, stop_after_deepest=True):
        run_forward(lm, ids)
    out: dict[str, list[list[float]]] = {}
    for part in PARTS:
        out[f"{part}_ratio"] = [values[(part, n)][0].tolist() for n in range(L)]
        out[f"{part}_cosine"] = [values[(part, n)][1].tolist() for n in range(L)]
    return out


def summarize_contributions(per_seq: dict[str, list[list[float]]], n_boot: int = 1000, seed: int = 0) -> list[dict]:
    """One row per layer: each part's mean ratio and cosine with bootstrap intervals over sequences."""
    rows = []
    for n in range(len(per_seq["layer_ratio"])):
        row: dict = {"layer": n}
        for key, layers in per_seq.items():
            values = np.asarray(layers[n], dtype=np.float64)
            row[key] = float(values.mean())
            row[f"{key}_ci"] = list(bootstrap_mean_ci(values, n_boot, seed))
        rows.append(row)
    return rows


def contributions(
    lm: LoadedModel, batches: Sequence[Tensor], n_boot: int = 1000, on_batch: Callable[[], None] | None = None
) -> list[dict]:
    """Sublayer contributions over batches of token ids (full length, no padding)."""
    parts = []
    for ids in batches:
        parts.append(contributions_batch(lm, ids))
        if on_batch is not None:
            on_batch()
    joined = {k: [sum((p[k][n] for p in parts), []) for n in range(lm.n_layers)] for k in parts[0]}
    return summarize_contributions(joined, n_boot)

"""Layer skipping and adjacent swapping (Lad et al. 2406.19384), and Csordas et al.'s skip matrix (2505.13898).

- skip i: layer i's sublayers add nothing (the stream leaving layer i is the stream entering it);
- swap i: layers i and i+1 run in the order i+1, i, each with its own call arguments (its mask and rotary
  tables, so a sliding-window layer stays one);
- output effect of each: delta CE, KL(clean || patched) and top-1 agreement of the next-token predictions
  (positions 1..T-2, as the horizon scores them);
- skip matrix: skipping layer i, the relative change of what every later layer j adds to the stream,
  ||c_j(skip i) - c_j|| / ||c_j|| with c_j = resid_post.j - resid_pre.j, per token, mean over positions >= 1.

A patched pass starts at the first changed layer from the clean run's stream (layers below are the clean
model's), so skipping every layer in turn costs about L/2 forward passes, not L.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from ..core.forward import BlockCalls, readout, record_block_calls
from ..core.hooks import read, run_forward
from ..core.models import LoadedModel
from ..core.sites import site_name
from ..evaluate.metrics import clean_reference, next_token_metrics, scored_positions
from ..evaluate.stats import bootstrap_mean_ci

OUTPUT_METRICS = ("delta_ce", "kl", "top1")


def run_blocks(lm: LoadedModel, layers: Sequence[int], hidden: Tensor, calls: BlockCalls) -> list[Tensor]:
    """Run blocks `layers` in that order from `hidden`, each with its own recorded call; the stream after each."""
    out = []
    for n in layers:
        args, kwargs = calls.calls[n]
        y = lm.blocks[n](hidden, *args, **kwargs)
        hidden = y[0] if isinstance(y, tuple) else y
        out.append(hidden)
    return out


def layer_order(n_layers: int, skip: int | None = None, swap: int | None = None) -> list[int]:
    """The order the blocks run in with layer `skip` removed or layers `swap`, `swap`+1 exchanged."""
    order = list(range(n_layers))
    if skip is not None:
        order.remove(skip)
    if swap is not None:
        if not 0 <= swap < n_layers - 1:
            raise ValueError(f"layer {swap} has no next layer to swap with (layers 0..{n_layers - 1})")
        order[swap], order[swap + 1] = order[swap + 1], order[swap]
    return order


def _relative_change(patched: Tensor, clean: Tensor) -> Tensor:
    """Per-sequence mean over positions >= 1 of ||patched - clean|| / ||clean|| ([B], float64)."""
    diff = (patched[:, 1:] - clean[:, 1:]).double().norm(dim=-1)
    return (diff / clean[:, 1:].double().norm(dim=-1).clamp_min(1e-30)).mean(-1).cpu()


def skipping_batch(lm: LoadedModel, ids: Tensor, swaps: bool = True, on_pass: Callable[[], None] | None = None) -> dict:
    """Per-sequence output effects of skipping each layer and swapping each adjacent pair, and the skip matrix.

    Returns {'skip': {metric: [L][B]}, 'swap': {metric: [L-1][B]}, 'matrix': [L][L][B] (NaN where j <= i),
    'clean_ce': [B]}.
    """
    L = lm.n_layers
    stream = [site_name("resid_pre", n) for n in range(L)] + ["final"]
    with torch.no_grad(), read(lm, stream) as cache, record_block_calls(lm) as calls:
        logits = run_forward(lm, ids).logits
    h = [cache[s] for s in stream]  # h[n]: entering layer n; h[L]: the final residual
    ref = clean_reference(logits, ids)
    scored = scored_positions(ref, ids.shape[0])
    nan = [float("nan")] * ids.shape[0]
    out: dict = {
        "skip": {m: [] for m in OUTPUT_METRICS},
        "swap": {m: [] for m in OUTPUT_METRICS},
        "matrix": [],
    }
    with torch.no_grad():
        for i in range(L):
            after = run_blocks(lm, range(i + 1, L), h[i], calls)
            final = after[-1] if after else h[i]
            for m, v in next_token_metrics(ref, readout(lm, final, scored), at_scored=True).items():
                if m in OUTPUT_METRICS:
                    out["skip"][m].append(v.tolist())
            row = [nan] * (i + 1)
            prev = h[i]
            for j, now in zip(range(i + 1, L), after, strict=True):
                row.append(_relative_change(now - prev, h[j + 1] - h[j]).tolist())
                prev = now
            out["matrix"].append(row)
            if on_pass is not None:
                on_pass()
        for i in range(L - 1 if swaps else 0):
            after = run_blocks(lm, [i + 1, i, *range(i + 2, L)], h[i], calls)
            for m, v in next_token_metrics(ref, readout(lm, after[-1], scored), at_scored=True).items():
                if m in OUTPUT_METRICS:
                    out["swap"][m].append(v.tolist())
            if on_pass is not None:
                on_pass()
    out["clean_ce"] = (-ref.target_logprob).double().mean(-1).cpu().tolist()
    return out


def join_batches(parts: list[dict]) -> dict:
    """Join per-batch `skipping_batch` results along the sequences."""

    def cat(rows_per_part: list[list[list[float]]]) -> list[list[float]]:
        return [sum((p[n] for p in rows_per_part), []) for n in range(len(rows_per_part[0]))]

    joined: dict = {kind: {m: cat([p[kind][m] for p in parts]) for m in OUTPUT_METRICS} for kind in ("skip", "swap")}
    L = len(parts[0]["matrix"])
    joined["matrix"] = [[sum((p["matrix"][i][j] for p in parts), []) for j in range(L)] for i in range(L)]
    joined["clean_ce"] = sum((p["clean_ce"] for p in parts), [])
    return joined


def summarize_skipping(per_seq: dict, n_boot: int = 1000, seed: int = 0) -> dict:
    """Means with bootstrap intervals: one row per skipped layer and per swapped pair, and the mean matrix."""
    tables = {}
    for kind in ("skip", "swap"):
        rows = []
        for n in range(len(per_seq[kind]["kl"])):
            row: dict = {"layer": n} if kind == "skip" else {"layers": f"{n},{n + 1}", "layer": n}
            for m in OUTPUT_METRICS:
                values = np.asarray(per_seq[kind][m][n], dtype=np.float64)
                row[m] = float(values.mean())
                row[f"{m}_ci"] = list(bootstrap_mean_ci(values, n_boot, seed))
            rows.append(row)
        tables[kind] = rows
    matrix = [[float(np.mean(cell)) if not np.isnan(cell).all() else None for cell in row] for row in per_seq["matrix"]]
    return {**tables, "matrix": matrix, "clean_ce": float(np.mean(per_seq["clean_ce"])), "finding": finding(matrix)}


def finding(matrix: list[list[float | None]]) -> dict:
    """The matrix's main finding: the mean effect of skipping a layer on the later layers, first half against
    second half of the skipped layers (Csordas et al. find the second half's much smaller)."""
    L = len(matrix)
    effect = [float(np.mean([v for v in row if v is not None])) if i < L - 1 else None for i, row in enumerate(matrix)]
    half = L // 2
    first = [e for e in effect[:half] if e is not None]
    second = [e for e in effect[half:] if e is not None]
    return {
        "mean_later_change_per_skipped_layer": effect,
        "first_half": float(np.mean(first)) if first else None,
        "second_half": float(np.mean(second)) if second else None,
    }

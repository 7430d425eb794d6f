"""The per-layer horizon profile: which layers need long-range reads?

For every layer n and window k, only layer n's sublayers get the truncated stream (the clean outputs of
layers max(0, n-k) .. n that precede each sublayer, as in the clean-sourced horizon; the variant's
embedding, fill and position-0 choices apply); every other layer runs as usual on the stream it gets,
so the change made at layer n reaches the output through the layers above it. k*_n is the smallest
window whose |delta CE| stays under the threshold.

Windows k >= n all start at layer 0 (they hold every earlier output, but not the embedding unless kept),
so they are measured once and shared. Each pass starts at layer n from the clean run's stream.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from torch import Tensor

from ..core.models import LoadedModel
from ..core.validate import BadNumberError
from ..evaluate.metrics import clean_reference, next_token_metrics, scored_positions
from .horizon import METRICS, HorizonVariant, check_ks, clean_run, patched_logits


def check_profile_variant(variant: HorizonVariant) -> None:
    """The profile truncates one layer at a time: refuse variants that mean something else."""
    if variant.readout_only or variant.enforce_from is not None:
        raise BadNumberError(
            "the per-layer profile truncates one layer at a time; it takes no --readout-only or --enforce-from"
        )


def distinct_window(n: int, k: int) -> int:
    """The window that layer n's truncation at k equals: every k >= max(n, 1) starts at layer 0."""
    return min(k, max(n, 1))


def profile_cells(n_layers: int, ks: Sequence[int]) -> list[tuple[int, int]]:
    """The (layer, window) passes a profile runs: one per layer and distinct window."""
    return sorted({(n, distinct_window(n, k)) for n in range(n_layers) for k in ks})


def profile_cost(n_layers: int, ks: Sequence[int]) -> tuple[int, float]:
    """Passes to run per batch, and what they cost in full forward passes (the blocks they run, counted)."""
    cells = profile_cells(n_layers, ks)
    return len(cells), sum((n_layers - n) / n_layers for n, _ in cells)


def profile_batch(
    lm: LoadedModel,
    ids: Tensor,
    ks: Sequence[int],
    variant: HorizonVariant | None = None,
    means: tuple[Tensor, list[Tensor]] | None = None,
    on_cell: Callable[[], None] | None = None,
) -> dict[str, list[list[list[float]]]]:
    """Per-sequence metrics for every layer and window: metric -> [L][len(ks)][B]."""
    variant = variant or HorizonVariant()
    check_profile_variant(variant)
    ks = check_ks(ks, lm.n_layers)
    clean = clean_run(lm, ids)
    ref = clean_reference(clean.logits, ids)
    scored = scored_positions(ref, ids.shape[0])
    measured: dict[tuple[int, int], dict[str, list[float]]] = {}
    for n, k in profile_cells(lm.n_layers, ks):
        logits = patched_logits(lm, ids, k, clean, variant, means, layers=[n], positions=scored)
        measured[n, k] = {m: v.tolist() for m, v in next_token_metrics(ref, logits, at_scored=True).items()}
        if on_cell is not None:
            on_cell()
    return {
        m: [[measured[n, distinct_window(n, k)][m] for k in ks] for n in range(lm.n_layers)]
        for m in (*METRICS, "clean_ce")
    }


def summarize_profile(ks: Sequence[int], per_seq: dict[str, list[list[list[float]]]], threshold: float) -> dict:
    """Mean of each metric per (layer, window) and k*_n by |delta CE| < threshold (None where no k meets it)."""
    threshold = float(threshold)
    means = {m: np.asarray(per_seq[m], dtype=np.float64).mean(-1) for m in METRICS}  # [L][K]
    k_star = []
    for row in means["delta_ce"]:
        hit = next((int(k) for k, v in zip(ks, row, strict=True) if abs(v) < threshold), None)
        k_star.append(hit)
    layers = [
        {
            "layer": n,
            "k_star": k_star[n],
            **{f"delta_ce_at_k{k}": float(means["delta_ce"][n][j]) for j, k in enumerate(ks)},
        }
        for n in range(len(k_star))
    ]
    ranked = sorted(range(len(k_star)), key=lambda n: (-(k_star[n] or max(ks) + 1), n))
    return {
        "ks": [int(k) for k in ks],
        "threshold": threshold,
        "k_star": k_star,
        "longest": ranked[:5],
        "mean": {m: means[m].tolist() for m in METRICS},
        "layers": layers,
    }


def parse_profile_ks(text: str, n_layers: int) -> list[int]:
    """'all', 'coarse' (1, 2, 4, ... and L) or explicit windows like 1,2,4,8."""
    if text == "all":
        return check_ks(None, n_layers)
    if text == "coarse":
        grid, k = [], 1
        while k < n_layers:
            grid.append(k)
            k *= 2
        return [*grid, n_layers]
    try:
        given = [int(k) for k in text.split(",")]
    except ValueError:
        raise BadNumberError(
            f"--profile-ks expects 'all', 'coarse' or whole numbers 1..{n_layers} like 1,2,4,8, got {text!r}"
        ) from None
    return check_ks(given, n_layers)


__all__ = [
    "check_profile_variant",
    "distinct_window",
    "parse_profile_ks",
    "profile_batch",
    "profile_cells",
    "profile_cost",
    "summarize_profile",
]

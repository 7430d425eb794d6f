"""Residual norm growth: the L2 norm at every site, raw and mean-centred, and its per-layer growth rate.

Tokens at position 0 (often BOS, a huge outlier) are excluded; sequences are full length, so there is
no padding. The stream point of layer l is `resid_pre.{l}` for l < L and `final` for l = L. The
growth rate is exp(slope) of a least-squares line through log(mean norm) against l over the fit range
(default: the middle 60% of layer boundaries), with a bootstrap interval over sequences.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from ..core.hooks import read, run_forward
from ..core.models import LoadedModel
from ..core.sites import site_name, split_site
from ..evaluate.stats import bootstrap_statistic, percentile_interval


def norm_sites(lm: LoadedModel) -> list[str]:
    """Sites whose norms are measured: all of them except the sublayer inputs (equal to stream points)."""
    return [s for s in lm.site_names() if split_site(s).kind not in ("attn_in", "mlp_in")]


def stream_sites(lm: LoadedModel) -> list[str]:
    """The stream point of each layer boundary l = 0..L."""
    return [site_name("resid_pre", n) for n in range(lm.n_layers)] + ["final"]


def _pass(lm: LoadedModel, batches: Sequence[Tensor], sites: list[str], reduce, on_batch) -> None:
    for ids in batches:
        with torch.no_grad(), read(lm, sites, reduce=reduce, stop_after_deepest=True):
            run_forward(lm, ids)
        if on_batch is not None:
            on_batch()


def per_sequence_norms(
    lm: LoadedModel, batches: Sequence[Tensor], on_batch: Callable[[], None] | None = None
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Mean L2 norm over positions >= 1 of each sequence at each site, raw and centred ([N, sites]).

    Two passes: the first accumulates float64 means per site, the second measures centred norms.
    """
    sites = norm_sites(lm)
    col = {s: i for i, s in enumerate(sites)}
    sums = torch.zeros(len(sites), lm.d_model, dtype=torch.float64)
    raw_rows: list[list[Tensor]] = []
    count = 0
    batch_raw: dict[str, Tensor] = {}
    rows = [0]  # the current batch's size: a position embedding ([1, T, d], shared by the batch) is expanded to it

    def first(name: str, act: Tensor) -> None:
        body = act[:, 1:].to(torch.float64).expand(rows[0], -1, -1)
        sums[col[name]] += body.sum((0, 1)).cpu()
        batch_raw[name] = body.norm(dim=-1).mean(-1).cpu()

    for ids in batches:
        batch_raw.clear()
        rows[0] = ids.shape[0]
        _pass(lm, [ids], sites, first, on_batch)
        raw_rows.append(torch.stack([batch_raw[s] for s in sites], dim=1))
        count += ids.shape[0] * (ids.shape[1] - 1)
    means = (sums / count).to(lm.device)
    centred_rows: list[Tensor] = []

    def second(name: str, act: Tensor) -> None:
        body = act[:, 1:].to(torch.float64).expand(rows[0], -1, -1) - means[col[name]]
        batch_raw[name] = body.norm(dim=-1).mean(-1).cpu()

    for ids in batches:
        batch_raw.clear()
        rows[0] = ids.shape[0]
        _pass(lm, [ids], sites, second, on_batch)
        centred_rows.append(torch.stack([batch_raw[s] for s in sites], dim=1))
    return sites, torch.cat(raw_rows).numpy(), torch.cat(centred_rows).numpy()


def fit_range_layers(n_layers: int, fit_range: tuple[float, float] = (0.2, 0.8)) -> tuple[int, int]:
    """Layer boundaries [lo, hi] (inclusive, out of 0..L) covered by a fractional fit range."""
    lo_f, hi_f = fit_range
    if not 0 <= lo_f < hi_f <= 1:
        raise ValueError(f"fit range must satisfy 0 <= lo < hi <= 1, got {fit_range}")
    lo, hi = round(lo_f * n_layers), round(hi_f * n_layers)
    if hi - lo < 1:
        raise ValueError(f"fit range {fit_range} covers fewer than two layer boundaries of {n_layers} layers")
    return lo, hi


def _slopes(log_norms: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Least-squares slope of each row of log_norms ([R, P]) against x ([P])."""
    xc = x - x.mean()
    return ((log_norms - log_norms.mean(axis=-1, keepdims=True)) * xc).sum(-1) / (xc**2).sum()


def growth_rate(stream_norms: np.ndarray, lo: int, hi: int, n_boot: int = 1000, seed: int = 0) -> dict:
    """Per-layer growth factor exp(slope) of log mean norm over layers lo..hi, with a bootstrap CI.

    stream_norms: [N sequences, L+1 layer boundaries].
    """
    x = np.arange(lo, hi + 1, dtype=np.float64)
    window = stream_norms[:, lo : hi + 1]
    point = float(np.exp(_slopes(np.log(window.mean(axis=0))[None], x)[0]))
    boot = bootstrap_statistic(window, lambda m: np.exp(_slopes(np.log(m), x)), n_boot, seed)
    return {"rate": point, "ci": list(percentile_interval(boot))}


def measure_norms(
    lm: LoadedModel,
    batches: Sequence[Tensor],
    fit_range: tuple[float, float] = (0.2, 0.8),
    n_boot: int = 1000,
    seed: int = 0,
    on_batch: Callable[[], None] | None = None,
) -> dict:
    """Norms at every site, sublayer-output ratios and the fitted growth rate, as a JSON-ready dict."""
    sites, raw, centred = per_sequence_norms(lm, batches, on_batch)
    col = {s: i for i, s in enumerate(sites)}
    L = lm.n_layers
    lo, hi = fit_range_layers(L, fit_range)
    stream_cols = [col[s] for s in stream_sites(lm)]
    raw_mean, centred_mean = raw.mean(axis=0), centred.mean(axis=0)
    sublayers = []
    for n in range(L):
        mlp_reader = site_name("resid_pre", n) if lm.adapter.parallel else site_name("resid_mid", n)
        attn, mlp = raw_mean[col[site_name("attn_out", n)]], raw_mean[col[site_name("mlp_out", n)]]
        sublayers.append(
            {
                "layer": n,
                "attn_out": float(attn),
                "mlp_out": float(mlp),
                "attn_ratio": float(attn / raw_mean[col[site_name("resid_pre", n)]]),
                "mlp_ratio": float(mlp / raw_mean[col[mlp_reader]]),
            }
        )
    return {
        "n_sequences": int(raw.shape[0]),
        "excluded": "position 0 (no padding: sequences are full length)",
        "sites": [
            {"site": s, "raw": float(raw_mean[i]), "centred": float(centred_mean[i])} for i, s in enumerate(sites)
        ],
        "stream": {
            "layer": list(range(L + 1)),
            "site": stream_sites(lm),
            "raw": [float(raw_mean[c]) for c in stream_cols],
            "centred": [float(centred_mean[c]) for c in stream_cols],
        },
        "sublayers": sublayers,
        "fit": {
            "layers": [lo, hi],
            "range": list(fit_range),
            "raw": growth_rate(raw[:, stream_cols], lo, hi, n_boot, seed),
            "centred": growth_rate(centred[:, stream_cols], lo, hi, n_boot, seed),
        },
    }

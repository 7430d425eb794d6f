"""The steerability pre-check at fit time (Braun et al. 2505.22637): how aligned a pair set's activation
differences are. The more aligned, the more reliable the vector was found to be; the sweep report checks whether
it predicts the measured effect here.

For the differences d_i = positive_i - negative_i at one site (N pairs), with u_i = d_i / |d_i| and m = mean d_i:
    diff_cosine_pairwise = mean over i < j of cos(d_i, d_j) = (|sum u_i|^2 - N) / (N (N - 1))   (None for N < 2)
    diff_cosine_to_mean  = mean over i of cos(d_i, m)       = (sum u_i) . m / (N |m|)
Both need only the running sums of u_i and d_i, so they stream (`AlignmentSums`); a zero difference (a pair whose
two texts read the same) counts as a unit vector of length 0, i.e. cosine 0 with everything.
"""

from __future__ import annotations

import torch
from torch import Tensor

PAIRWISE = "diff_cosine_pairwise"
TO_MEAN = "diff_cosine_to_mean"
PRECHECK = (PAIRWISE, TO_MEAN)


class AlignmentSums:
    """Running float64 sums of the unit differences and the differences at one site; `add` batches of them."""

    def __init__(self) -> None:
        self.units: Tensor | None = None
        self.diffs: Tensor | None = None
        self.n = 0

    def add(self, diffs: Tensor) -> None:
        """Add differences [B, d] (one row per pair)."""
        d = diffs.double().reshape(-1, diffs.shape[-1])
        norms = d.norm(dim=-1, keepdim=True)
        units = torch.where(norms > 0, d / norms.clamp_min(1e-300), torch.zeros_like(d))
        self.units = units.sum(0) if self.units is None else self.units + units.sum(0)
        self.diffs = d.sum(0) if self.diffs is None else self.diffs + d.sum(0)
        self.n += d.shape[0]

    def result(self) -> dict[str, float | None]:
        """{diff_cosine_pairwise, diff_cosine_to_mean} (None where undefined: no pairs, one pair, a zero mean)."""
        if self.n == 0 or self.units is None or self.diffs is None:
            return {PAIRWISE: None, TO_MEAN: None}
        n = self.n
        pairwise = None if n < 2 else float((self.units @ self.units - n) / (n * (n - 1)))
        mean_norm = float(self.diffs.norm())
        to_mean = None if mean_norm == 0 else float(self.units @ self.diffs / (n * mean_norm))
        return {PAIRWISE: pairwise, TO_MEAN: to_mean}


def diff_alignment(pos: Tensor, neg: Tensor) -> dict[str, float | None]:
    """The pre-check of paired activations [N, d] (row i of `pos` pairs with row i of `neg`)."""
    sums = AlignmentSums()
    sums.add(pos.double() - neg.double())
    return sums.result()


def precheck_meta(per_site: dict[str, dict[str, float | None]]) -> dict[str, dict[str, float | None]]:
    """Vector metadata from {site: {name: value}}: {diff_cosine_pairwise: {site: v}, diff_cosine_to_mean: {...}}."""
    return {name: {site: values[name] for site, values in per_site.items()} for name in PRECHECK}


def describe_precheck(meta: dict) -> list[str]:
    """Lines for `vectors inspect`: the pre-check per site, or nothing when the vector holds none."""
    if not all(isinstance(meta.get(name), dict) for name in PRECHECK):
        return []
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    lines = ["pre-check (alignment of the pairs' differences; Braun et al. 2505.22637):"]
    for site in meta[PAIRWISE]:
        lines.append(f"  {site}: mean pairwise cosine {fmt(meta[PAIRWISE].get(site))}, "
                     f"mean cosine to their mean {fmt(meta[TO_MEAN].get(site))}")  # fmt: skip
    return lines

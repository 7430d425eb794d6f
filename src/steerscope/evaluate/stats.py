"""Bootstrap intervals over sequences (or any unit of resampling)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def bootstrap_indices(n: int, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """[n_boot, n] indices drawn with replacement."""
    if n < 1:
        raise ValueError("cannot bootstrap an empty sample")
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    lo, hi = np.percentile(samples, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def bootstrap_mean_ci(
    values: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile interval of the mean of `values` (one value per unit)."""
    values = np.asarray(values, dtype=np.float64)
    idx = bootstrap_indices(len(values), n_boot, seed)
    return percentile_interval(values[idx].mean(axis=1), level)


def bootstrap_statistic(
    per_unit: np.ndarray, statistic: Callable[[np.ndarray], np.ndarray], n_boot: int = 1000, seed: int = 0
) -> np.ndarray:
    """`statistic` on [n_boot, ...] resampled means of `per_unit` ([n_units, ...]); returns n_boot values."""
    per_unit = np.asarray(per_unit, dtype=np.float64)
    idx = bootstrap_indices(per_unit.shape[0], n_boot, seed)
    return statistic(per_unit[idx].mean(axis=1))


def bootstrap_two_level_ci(
    values: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Interval of the grand mean of `values` [n_groups, n_items] (e.g. seeds x prompts), resampling both
    groups and items with replacement (the same item draw for every group of a replicate: items are paired).
    NaN entries are ignored in each mean."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"expected a [groups, items] array, got shape {values.shape}")
    groups = bootstrap_indices(values.shape[0], n_boot, seed)
    items = bootstrap_indices(values.shape[1], n_boot, seed + 1)
    means = np.array([np.nanmean(values[g][:, i]) for g, i in zip(groups, items, strict=True)])
    return percentile_interval(means, level)

"""What a sweep can fit: every steering method, plus interventions that are not vectors (sae_clamp).

A fitted intervention has `.apply(lm, coefficient)` (a context manager) and `.meta`. Fitting also
returns its cost (core.cost): the pairs' tokens, the wall time and FLOPs of reading them, and, for SAE
methods, the SAE's own training tokens, time and FLOPs from its cfg.json, so a report can show the
amortized cost next to the pairs used.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol

from .core.cost import forward_flops, text_tokens
from .core.models import LoadedModel
from .steering.methods import METHODS, fit, random_direction
from .steering.pairs import ContrastPair
from .steering.vector import SteeringVector

SAE_METHOD_NAMES = ("sae_add", "sae_clamp")
SWEEP_METHODS = (*[m for m in METHODS if m != "random"], "sae_clamp")
COST_METRICS = (
    "cost_pair_tokens",
    "cost_fit_seconds",
    "cost_fit_flops",
    "cost_sae_tokens",
    "cost_sae_seconds",
    "cost_sae_flops",
    "cost_total_tokens",
    "cost_total_seconds",
    "cost_total_flops",
)


class Intervention(Protocol):
    meta: dict

    def apply(self, lm: LoadedModel, coefficient: float = 1.0): ...


def sae_site(options: dict) -> str:
    """The site the SAE named in a method's options was trained at (from its cfg.json)."""
    from .sae.saelens import read_config

    folder = options.get("sae")
    if not folder:
        raise ValueError("the SAE methods need the option sae = '<folder with cfg.json + sae_weights.safetensors>'")
    site = read_config(folder).site
    if not site:
        raise ValueError(f"the SAE in {folder} names no site; steerscope needs it to know where the SAE reads")
    return str(site)


def method_sites(method: str, sites: Sequence[str], options: dict) -> list[str]:
    """The sites of the sweep at which `method` can be fitted (an SAE method: only its SAE's site)."""
    if method in SAE_METHOD_NAMES:
        return [s for s in sites if s == sae_site(options)]
    return list(sites)


def fit_intervention(
    lm: LoadedModel, method: str, pairs: list[ContrastPair], sites: Sequence[str], seed: int, options: dict
) -> tuple[Intervention, dict[str, float]]:
    """Fit `method` on the pairs at `sites`; returns the intervention and its cost."""
    start = time.perf_counter()
    if method == "random":
        fitted: Intervention = random_direction(lm, pairs, list(sites), seed=seed, batch_size=16)
    elif method == "sae_clamp":
        from .sae.steer import fit_sae_clamp  # imported on use: the sae package builds on steering

        fitted = fit_sae_clamp(lm, pairs, list(sites), seed=seed, batch_size=16, **options)
    else:
        fitted = fit(method, lm, pairs, list(sites), seed=seed, batch_size=16, **options)
    seconds = time.perf_counter() - start
    tokens = text_tokens(lm, [t for p in pairs for t in (p.positive, p.negative)])
    cost = {"cost_pair_tokens": float(tokens), "cost_fit_seconds": seconds}
    cost["cost_fit_flops"] = forward_flops(lm, sites, tokens)
    sae = fitted.meta.get("cost", {}) if method in SAE_METHOD_NAMES else {}
    cost["cost_sae_tokens"] = float(sae.get("sae_train_tokens") or 0.0)
    cost["cost_sae_seconds"] = float(sae.get("sae_train_seconds") or 0.0)
    cost["cost_sae_flops"] = float(sae.get("sae_train_flops") or 0.0)
    for part in ("tokens", "seconds", "flops"):
        own = cost["cost_pair_tokens"] if part == "tokens" else cost[f"cost_fit_{part}"]
        cost[f"cost_total_{part}"] = own + cost[f"cost_sae_{part}"]
    return fitted, cost


def at_site(fitted: Intervention, site: str) -> Intervention:
    """The intervention restricted to one site (a vector keeps only that site; an SAE clamp has just one)."""
    if isinstance(fitted, SteeringVector):
        return SteeringVector({site: fitted.vectors[site]}, dict(fitted.meta))
    own = getattr(fitted, "site", None)
    if own is not None and own != site:
        raise ValueError(f"this intervention acts at {own}, not {site}")
    return fitted

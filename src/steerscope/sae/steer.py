"""Steering by SAE feature: clamp a latent (keeping the SAE's error term) or add its decoder direction.

sae_clamp: h -> decode(f with f[latent] := value at the chosen positions) + (h - decode(f)),  f = encode(h)
           so only the latent's contribution changes: h + (value - f[latent]) * W_dec[latent].
sae_add:   h -> h + coefficient * W_dec[latent]   (an ordinary SteeringVector, applied like any other).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from ..core.cost import text_tokens
from ..core.hooks import edit, track_positions
from ..core.models import LoadedModel
from ..core.positions import position_weights, validate_positions
from ..steering.methods import _meta, mean_diff
from ..steering.pairs import ContrastPair, dataset_hash
from ..steering.vector import SteeringVector
from .features import rank_latents, text_latents
from .model import SparseAutoencoder
from .saelens import load_saelens


def _site(sae: SparseAutoencoder, site: str | None) -> str:
    site = site or sae.cfg.site
    if site is None:
        raise ValueError("the SAE names no site; pass site='resid_pre.10' (where it was trained)")
    return str(site)


def _check(lm: LoadedModel, sae: SparseAutoencoder, latent: int) -> None:
    if sae.d_in != lm.d_model:
        raise ValueError(f"the SAE reads {sae.d_in} dimensions but {lm.name} has d_model {lm.d_model}")
    sae.check_latent(latent)


def clamp_fn(sae: SparseAutoencoder, latent: int, value: float, weights=None):
    """The edit `h -> clamped h`; `weights()` gives a bool [B, T] of positions to clamp (None: all)."""

    def clamp(h: Tensor) -> Tensor:
        # decode(f') + (h - decode(f)) with f' = f except at `latent` equals h + (f'[latent] - f[latent]) W_dec[latent]
        # (the decoder is linear); the second form leaves unclamped positions bit-exact instead of re-rounded.
        with torch.no_grad():
            current = sae.encode(h)[..., latent]
            target = torch.full_like(current, float(value))
            if weights is not None:
                target = torch.where(weights().to(h.device), target, current)
            return h + ((target - current).unsqueeze(-1) * sae.W_dec[latent]).to(h.dtype)

    return clamp


@contextmanager
def sae_clamp(
    lm: LoadedModel,
    sae: SparseAutoencoder,
    latent: int,
    value: float,
    site: str | None = None,
    positions: str | Tensor = "all",
) -> Iterator[None]:
    """Clamp one latent to `value` at `site` (default: the SAE's own) during forward calls in the block."""
    _check(lm, sae, latent)
    positions = validate_positions(positions)
    site = _site(sae, site)
    with ExitStack() as stack:
        weights = None
        if not (isinstance(positions, str) and positions == "all"):
            tracker = track_positions(lm)
            stack.callback(tracker.remove)
            weights = lambda: position_weights(positions, tracker.require())  # noqa: E731
        stack.enter_context(edit(lm, {site: clamp_fn(sae, latent, value, weights)}))
        yield


def sae_add_vector(
    lm: LoadedModel, sae: SparseAutoencoder, latent: int, site: str | None = None, norm: float | None = None
) -> SteeringVector:
    """The latent's decoder direction as a SteeringVector (unit norm, or `norm`), applied with `.apply(lm, c)`."""
    _check(lm, sae, latent)
    site = _site(sae, site)
    d = sae.direction(latent).float()
    d = d / d.norm() * (1.0 if norm is None else norm)
    options = {"latent": int(latent), "d_sae": sae.d_sae, "architecture": sae.cfg.architecture}
    return SteeringVector({site: d}, _meta(lm, "sae_add", [], "-", options))


# --- the steering contract: fit(lm, pairs, sites, read, batch_size, seed, **options) -----------------


@dataclass
class SAEClamp:
    """A fitted clamp: `apply(lm, coefficient)` clamps the latent to coefficient x `scale`.

    `scale` (see fit_sae_clamp): by default the mean-difference norm of the pairs divided by the
    latent's decoder norm, so that where the latent is off, coefficient c moves the residual as far as
    mean_diff at coefficient c (coefficients comparable across methods); or the latent's largest
    activation on the positive texts (AxBench-style multiples of the maximum activation).
    """

    sae: SparseAutoencoder
    latent: int
    site: str
    scale: float
    meta: dict = field(default_factory=dict)

    @contextmanager
    def apply(self, lm: LoadedModel, coefficient: float = 1.0, positions: str | Tensor = "all") -> Iterator[None]:
        with sae_clamp(lm, self.sae, self.latent, coefficient * self.scale, self.site, positions):
            yield


def _as_sae(sae: SparseAutoencoder | str | Path | None) -> SparseAutoencoder:
    if sae is None:
        raise ValueError("the SAE methods need an SAE: pass sae=<folder with cfg.json + sae_weights.safetensors>")
    return sae if isinstance(sae, SparseAutoencoder) else load_saelens(sae)


def _choose(lm, sae, pairs, sites, read, batch_size, latent, by) -> tuple[str, int, dict, Tensor]:
    if not pairs:
        raise ValueError("the SAE methods need at least one contrast pair")
    site = _site(sae, None)
    if [str(s) for s in sites] != [site]:
        raise ValueError(f"this SAE reads {site}; the SAE methods work at that one site, got sites {list(sites)}")
    pos = text_latents(lm, sae, [p.positive for p in pairs], read, batch_size)
    neg = text_latents(lm, sae, [p.negative for p in pairs], read, batch_size)
    ranked = rank_latents(pos, neg, by, top=1)["positive"][0]
    chosen = ranked["latent"] if latent is None else int(latent)
    _check(lm, sae, chosen)
    pair_tokens = text_tokens(lm, [t for p in pairs for t in (p.positive, p.negative)])
    cost = {
        "sae_train_tokens": sae.cfg.meta.get("train_model_tokens", sae.cfg.meta.get("train_tokens")),
        "sae_train_seconds": sae.cfg.meta.get("train_seconds"),
        "sae_train_flops": sae.cfg.meta.get("train_flops"),
        "pair_tokens": pair_tokens,
    }
    info = {"latent": chosen, "chosen_by": by if latent is None else "given", "ranking_top": ranked, "cost": cost}
    return site, chosen, info, pos[:, chosen]


def _mean_diff_norm(lm: LoadedModel, pairs, site: str, read: str, batch_size: int) -> float:
    """Norm of the pairs' mean difference at `site`; read "max" (a latent reading only) uses the last token."""
    return mean_diff(lm, pairs, [site], "last" if read == "max" else read, batch_size).meta["norms"][site]


def fit_sae_clamp(
    lm: LoadedModel,
    pairs: Sequence[ContrastPair],
    sites: Sequence[str],
    read: str = "last",
    batch_size: int = 8,
    seed: int = 0,
    sae: SparseAutoencoder | str | Path | None = None,
    latent: int | None = None,
    by: str = "auroc",
    scale: str = "mean_diff",
) -> SAEClamp:
    """sae_clamp under the steering contract: the latent that best separates the pairs (or `latent`).

    `scale`: "mean_diff" (clamp value per unit coefficient = mean-difference norm / decoder norm, i.e.
    matched norm) or "max_activation" (the latent's largest activation on the positive texts)."""
    if scale not in ("mean_diff", "max_activation"):
        raise ValueError(f"scale must be 'mean_diff' or 'max_activation', got {scale!r}")
    sae = _as_sae(sae)
    site, chosen, info, pos_acts = _choose(lm, sae, pairs, sites, read, batch_size, latent, by)
    if scale == "max_activation":
        value = float(pos_acts.max()) or 1.0
    else:
        norm = _mean_diff_norm(lm, pairs, site, read, batch_size)
        value = norm / float(sae.W_dec[chosen].detach().norm())
    options = {"latent": chosen, "by": by, "scale": scale}
    meta = {**_meta(lm, "sae_clamp", pairs, read, options), "scale": value, **info}
    return SAEClamp(sae, chosen, site, value, meta)


def fit_sae_add(
    lm: LoadedModel,
    pairs: Sequence[ContrastPair],
    sites: Sequence[str],
    read: str = "last",
    batch_size: int = 8,
    seed: int = 0,
    sae: SparseAutoencoder | str | Path | None = None,
    latent: int | None = None,
    by: str = "auroc",
    scale: str = "mean_diff",
) -> SteeringVector:
    """sae_add under the steering contract: the chosen latent's decoder row, scaled to the norm of the
    pairs' mean difference (as pca and probe are) or kept at unit norm (`scale="unit"`)."""
    sae = _as_sae(sae)
    site, chosen, info, _ = _choose(lm, sae, pairs, sites, read, batch_size, latent, by)
    norm = None if scale == "unit" else _mean_diff_norm(lm, pairs, site, read, batch_size)
    vec = sae_add_vector(lm, sae, chosen, site, norm)
    vec.meta.update({"n_pairs": len(pairs), "dataset_hash": dataset_hash(list(pairs)), "read": read, **info})
    return vec


#: name -> fit function with the steering contract (register these in a sweep next to steering.methods.METHODS)
SAE_METHODS = {"sae_clamp": fit_sae_clamp, "sae_add": fit_sae_add}

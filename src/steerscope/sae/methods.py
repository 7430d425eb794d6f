"""The SAE methods: choose the latent that best separates contrast pairs, then clamp it or add its decoder row.

Both take the steering methods' signature, `fit(lm, pairs, sites, read, batch_size, seed, sae=..., ...)`,
and are found by name in the catalogue (steerscope.methods) like every other method:
    fit_sae_clamp -> SAEClamp (sae.steer)      fit_sae_add -> SteeringVector
`by` chooses the latent: "auroc" or "mean_diff" (how it fires on the pairs), or "output" (the AUROC's best
candidates, kept by their effect on the model's output: sae.output_score, after Arad et al.).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import Tensor

from ..core.cost import text_tokens
from ..core.models import LoadedModel
from ..steering.alignment import PRECHECK
from ..steering.methods import _meta, mean_diff
from ..steering.pairs import ContrastPair, dataset_hash
from ..steering.vector import SteeringVector
from .features import rank_latents, text_latents
from .model import SparseAutoencoder
from .output_score import CANDIDATES, output_scores
from .saelens import load_saelens
from .steer import SAEClamp, _check, _site, sae_add_vector

CHOOSE_BY = ("auroc", "mean_diff", "output")

__all__ = ["fit_sae_add", "fit_sae_clamp"]


def _as_sae(sae: SparseAutoencoder | str | Path | None) -> SparseAutoencoder:
    if sae is None:
        raise ValueError("the SAE methods need an SAE: pass sae=<folder with cfg.json + sae_weights.safetensors>")
    return sae if isinstance(sae, SparseAutoencoder) else load_saelens(sae)


def _choose(lm, sae, pairs, site, read, batch_size, latent, by, norm) -> tuple[int, dict, Tensor]:
    pos = text_latents(lm, sae, [p.positive for p in pairs], read, batch_size)
    neg = text_latents(lm, sae, [p.negative for p in pairs], read, batch_size)
    if by not in CHOOSE_BY:
        raise ValueError(f"by must be one of {', '.join(CHOOSE_BY)}, got {by!r}")
    extra: dict = {}
    if by == "output" and latent is None:  # Arad et al.: the AUROC's best candidates, chosen by their output effect
        top = rank_latents(pos, neg, "auroc", top=CANDIDATES)["positive"]
        scores = output_scores(lm, sae, pairs, [r["latent"] for r in top], norm, batch_size)
        ranked = max(top, key=lambda r: (scores[r["latent"]], r["auroc"]))
        extra = {"output_scores": {str(k): v for k, v in scores.items()}}
    else:
        ranked = rank_latents(pos, neg, "auroc" if by == "output" else by, top=1)["positive"][0]
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
    return chosen, {**info, **extra}, pos[:, chosen]


def _sae_site(sae, pairs, sites) -> str:
    if not pairs:
        raise ValueError("the SAE methods need at least one contrast pair")
    site = _site(sae, None)
    if [str(s) for s in sites] != [site]:
        raise ValueError(f"this SAE reads {site}; the SAE methods work at that one site, got sites {list(sites)}")
    return site


def _mean_diff(lm: LoadedModel, pairs, site: str, read: str, batch_size: int) -> tuple[float, dict]:
    """Norm of the pairs' mean difference at `site` and the pairs' pre-check there (steering.alignment); read
    "max" (a latent reading only) uses the last token."""
    meta = mean_diff(lm, pairs, [site], "last" if read == "max" else read, batch_size).meta
    return meta["norms"][site], {k: meta[k] for k in PRECHECK if k in meta}


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
    site = _sae_site(sae, pairs, sites)
    norm, precheck = _mean_diff(lm, pairs, site, read, batch_size)
    chosen, info, pos_acts = _choose(lm, sae, pairs, site, read, batch_size, latent, by, norm)
    if scale == "max_activation":
        value = float(pos_acts.max()) or 1.0
    else:
        value = norm / float(sae.W_dec[chosen].detach().norm())
    options = {"latent": chosen, "by": by, "scale": scale}
    meta = {**_meta(lm, "sae_clamp", pairs, read, options), "scale": value, **info, **precheck}
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
    site = _sae_site(sae, pairs, sites)
    norm, precheck = _mean_diff(lm, pairs, site, read, batch_size)
    chosen, info, _ = _choose(lm, sae, pairs, site, read, batch_size, latent, by, norm)
    vec = sae_add_vector(lm, sae, chosen, site, None if scale == "unit" else norm)
    vec.meta.update({"n_pairs": len(pairs), "dataset_hash": dataset_hash(list(pairs)), "read": read, **info,
                     **precheck})  # fmt: skip
    return vec

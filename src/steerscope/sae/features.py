"""Find the SAE latents of a concept from contrast pairs, and show what each latent fires on.

A text's latent activation is read at its last token ("last", like the steering methods) or as the
maximum over its tokens after the first ("max"). Latents are ranked by AUROC between positive and
negative texts (P(positive > negative) + P(tie)/2; 1 = fires only on positives, 0 = only on
negatives) or by the difference of mean activations.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..core.corpus import token_sequences
from ..core.extract import site_activations, text_vectors
from ..core.models import LoadedModel
from ..steering.pairs import ContrastPair
from .model import SparseAutoencoder

FEATURE_READS = ("last", "max")


@torch.no_grad()
def text_latents(
    lm: LoadedModel, sae: SparseAutoencoder, texts: Sequence[str], read: str = "last", batch_size: int = 8
) -> Tensor:
    """Latent activations per text [N, d_sae] at the SAE's site."""
    site = sae.cfg.site
    if site is None:
        raise ValueError("the SAE names no site; set sae.cfg.site to where it was trained (e.g. 'resid_pre.10')")
    if read == "last":
        return sae.encode(text_vectors(lm, list(texts), [site], "last", batch_size)[site])
    if read != "max":
        raise ValueError(f"read must be one of {', '.join(FEATURE_READS)}, got {read!r}")
    # the largest latent value over the tokens after the first, floored at 0 (a one-token text reads 0)
    peak = text_vectors(lm, list(texts), [site], "max", batch_size, transform=sae.encode, skip_first=True)[site]
    return peak.clamp_min(0)


def auroc(pos: Tensor, neg: Tensor, chunk: int = 512) -> Tensor:
    """Per-column AUROC of pos [Np, F] against neg [Nn, F]: P(pos > neg) + P(pos == neg) / 2."""
    scores = []
    for start in range(0, pos.shape[1], chunk):
        p = pos[:, start : start + chunk].unsqueeze(1)
        n = neg[:, start : start + chunk].unsqueeze(0)
        scores.append(((p > n).float() + 0.5 * (p == n).float()).mean((0, 1)))
    return torch.cat(scores)


def rank_latents(pos: Tensor, neg: Tensor, by: str = "auroc", top: int = 10) -> dict[str, list[dict]]:
    """The `top` latents most on the positive side and most on the negative side, with their statistics."""
    if by not in ("auroc", "mean_diff"):
        raise ValueError(f"rank by 'auroc' or 'mean_diff', got {by!r}")
    stats = {
        "auroc": auroc(pos, neg),
        "mean_diff": pos.mean(0) - neg.mean(0),
        "mean_pos": pos.mean(0),
        "mean_neg": neg.mean(0),
        "active_pos": (pos > 0).float().mean(0),
        "active_neg": (neg > 0).float().mean(0),
    }
    key = stats[by]
    # ties in AUROC (common with sparse latents) are broken by the mean difference
    tiebreak = stats["mean_diff"] / (stats["mean_diff"].abs().max() + 1e-12) * 1e-6 if by == "auroc" else 0
    order = torch.argsort(key + tiebreak, descending=True)

    def rows(idx: Tensor) -> list[dict]:
        return [{"latent": int(i), **{k: float(v[i]) for k, v in stats.items()}} for i in idx]

    return {"positive": rows(order[:top]), "negative": rows(order.flip(0)[:top])}


def find_features(
    lm: LoadedModel,
    sae: SparseAutoencoder,
    pairs: Sequence[ContrastPair],
    read: str = "last",
    by: str = "auroc",
    top: int = 10,
    batch_size: int = 8,
) -> dict[str, list[dict]]:
    """Rank latents by how well they separate the positive from the negative texts of contrast pairs."""
    if not pairs:
        raise ValueError("no contrast pairs given; pass at least one")
    pos = text_latents(lm, sae, [p.positive for p in pairs], read, batch_size)
    neg = text_latents(lm, sae, [p.negative for p in pairs], read, batch_size)
    return rank_latents(pos, neg, by, top)


@torch.no_grad()
def top_activating(
    lm: LoadedModel,
    sae: SparseAutoencoder,
    latents: Sequence[int],
    source: str = "wikipedia",
    n_sequences: int = 256,
    seq_len: int = 64,
    top: int = 5,
    context: int = 12,
    seed: int = 1,
    model_batch: int = 16,
) -> dict[int, list[dict]]:
    """The corpus tokens each latent fires on most, as snippets with the token marked «like this»."""
    for latent in latents:
        sae.check_latent(latent)
    ids = token_sequences(lm.tokenizer, source, n_sequences, seq_len, seed)
    acts = site_activations(lm, ids, sae.cfg.site, model_batch)
    cols = torch.tensor(list(latents), dtype=torch.long)
    values = torch.cat([sae.encode(acts[s : s + 2048])[:, cols] for s in range(0, len(acts), 2048)])
    per_seq = seq_len - 1
    out: dict[int, list[dict]] = {}
    for j, latent in enumerate(latents):
        best = values[:, j].topk(min(top, len(values)))
        snippets = []
        for value, flat in zip(best.values.tolist(), best.indices.tolist(), strict=True):
            if value <= 0:
                break
            row, pos = divmod(flat, per_seq)
            pos += 1  # position 0 was left out
            before = lm.tokenizer.decode(ids[row, max(0, pos - context) : pos])
            token = lm.tokenizer.decode(ids[row, pos : pos + 1])
            after = lm.tokenizer.decode(ids[row, pos + 1 : pos + 4])
            snippets.append({"value": value, "text": f"{before}«{token}»{after}".replace("\n", " ")})
        out[int(latent)] = snippets
    return out


def explain_features(
    lm: LoadedModel,
    sae: SparseAutoencoder,
    pairs: Sequence[ContrastPair],
    read: str = "last",
    by: str = "auroc",
    top: int = 5,
    source: str = "wikipedia",
    n_sequences: int = 256,
    seq_len: int = 64,
    snippets: int = 3,
) -> tuple[dict[str, list[dict]], dict[int, list[dict]]]:
    """`steerscope sae features`: the latents ranked per side of the pairs, and (unless `snippets` is 0) the
    corpus snippets each of them fires on most."""
    ranked = find_features(lm, sae, pairs, read=read, by=by, top=top)
    latents = [r["latent"] for side in ranked.values() for r in side]
    shown = top_activating(lm, sae, latents, source, n_sequences, seq_len, top=snippets) if snippets else {}
    return ranked, shown

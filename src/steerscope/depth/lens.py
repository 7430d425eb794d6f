"""The logit lens (and any translator lens, e.g. the tuned lens) at every layer output, against the model itself.

At layer l the lens reads `resid_post.{l}` and applies the model's own readout to it: the final norm, the
unembedding and the final logit soft-cap where the model has one (`core.forward.readout`); a translator
(tuned lens) first maps the stream. At the last layer `resid_post.{L-1}` is the residual the final norm
reads, so the logit lens there equals the model.

Metrics, per sequence, averaged over positions 1..T-1 (position 0 excluded; the last position has no next
token, so cross-entropy averages over positions 1..T-2):
- kl: KL(final || lens) in nats, the model's own next-token distribution against the lens's;
- top1: whether the lens's top token is the model's;
- top5: |top-5 of the lens & top-5 of the model| / 5;
- ce: cross-entropy of the lens on the actual next token (nats); `model_ce` is the model's own.

Cost: one forward pass (the stream read at every layer) plus one final norm and unembedding per layer, each
over the whole batch at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..core.forward import readout
from ..core.hooks import read, run_forward
from ..core.models import LoadedModel
from ..core.sites import site_name
from ..evaluate.stats import bootstrap_mean_ci

#: (layer, stream [B, P, d]) -> the stream the readout gets; None is the logit lens (the identity)
Translator = Callable[[int, Tensor], Tensor]

LENS_METRICS = ("kl", "top1", "top5", "ce")


def lens_sites(lm: LoadedModel) -> list[str]:
    """The stream the lens reads at each layer: `resid_post.0` .. `resid_post.{L-1}`."""
    return [site_name("resid_post", n) for n in range(lm.n_layers)]


def lens_logits(lm: LoadedModel, layer: int, stream: Tensor, translator: Translator | None = None) -> Tensor:
    """Logits the lens reads from `stream` ([..., d], taken at `resid_post.{layer}`)."""
    if translator is not None:
        stream = translator(layer, stream)
    return readout(lm, stream)


@dataclass
class LensReference:
    """The model's side of every lens comparison on one batch (computed once, not once per layer)."""

    probs: Tensor  # [B, P, V] float32, positions 1..T-1
    neg_entropy: Tensor  # [B, P] sum p log p
    top5: Tensor  # [B, P, 5] the model's top-5 tokens, best first
    targets: Tensor  # [B, P-1] next-token ids of positions 1..T-2


def lens_reference(final_logits: Tensor, targets: Tensor) -> LensReference:
    """Prepare the model's distribution at positions 1..T-1 ([B, P, V] logits) and the next tokens."""
    logp = torch.log_softmax(final_logits.float(), dim=-1)
    probs = logp.exp()
    return LensReference(
        probs=probs,
        neg_entropy=torch.linalg.vecdot(probs, logp),
        top5=logp.topk(5, dim=-1).indices,
        targets=targets.to(logp.device),
    )


def lens_scores(ref: LensReference, lens: Tensor) -> dict[str, Tensor]:
    """Per-sequence metrics of lens logits ([B, P, V]) against the model's (`lens_reference`): float64 [B] each.

    KL = sum p log p - (sum p z - logsumexp z) for lens logits z, one sequence at a time, so no [B, P, V]
    log-softmax of the lens is ever made.
    """
    if lens.shape != ref.probs.shape:
        raise ValueError(f"lens logits {tuple(lens.shape)} and model logits {tuple(ref.probs.shape)} differ")
    out: dict[str, list[Tensor]] = {m: [] for m in LENS_METRICS}
    for b in range(lens.shape[0]):
        z = lens[b].float()
        peak = z.max(-1).values
        lse = (z - peak.unsqueeze(-1)).exp_().sum(-1).log_() + peak
        out["kl"].append((ref.neg_entropy[b] - (torch.linalg.vecdot(ref.probs[b], z) - lse)).clamp_min(0).mean())
        top = z.topk(5, dim=-1).indices
        model_top = ref.top5[b]
        out["top1"].append((top[:, 0] == model_top[:, 0]).float().mean())
        out["top5"].append((top.unsqueeze(-1) == model_top.unsqueeze(-2)).any(-1).float().sum(-1).div(5).mean())
        out["ce"].append((lse[:-1] - z[:-1].gather(-1, ref.targets[b].unsqueeze(-1)).squeeze(-1)).mean())
    return {m: torch.stack(v).double().cpu() for m, v in out.items()}


def model_ce(final_logits: Tensor, targets: Tensor) -> Tensor:
    """The model's own cross-entropy per sequence ([B], float64), on positions 1..T-2."""
    logp = torch.log_softmax(final_logits[:, :-1].float(), dim=-1)
    return -logp.gather(-1, targets.unsqueeze(-1).to(logp.device)).squeeze(-1).double().mean(-1).cpu()


def lens_batch(
    lm: LoadedModel,
    ids: Tensor,
    translator: Translator | None = None,
    on_layer: Callable[[int], None] | None = None,
) -> dict[str, list[list[float]]]:
    """One forward pass and a lens readout at every layer: per-sequence metrics, [L][B] each (`model_ce`: [1][B])."""
    if ids.shape[1] < 3:
        raise ValueError(f"the lens needs sequences of at least 3 tokens, got {ids.shape[1]}")
    sites = lens_sites(lm)
    with torch.no_grad(), read(lm, sites) as cache:
        logits = run_forward(lm, ids).logits
    final = logits[:, 1:]
    targets = ids[:, 2:]
    ref = lens_reference(final, targets)
    out: dict[str, list[list[float]]] = {m: [] for m in LENS_METRICS}
    with torch.no_grad():
        for n, site in enumerate(sites):
            scores = lens_scores(ref, lens_logits(lm, n, cache.pop(site)[:, 1:], translator))
            for m in LENS_METRICS:
                out[m].append(scores[m].tolist())
            if on_layer is not None:
                on_layer(n)
    out["model_ce"] = [model_ce(final, targets).tolist()]
    return out


def summarize_lens(per_seq: dict[str, list[list[float]]], n_boot: int = 1000, seed: int = 0) -> dict:
    """Means over sequences with bootstrap intervals for every layer, and the model's own CE."""
    arrays = {m: np.asarray(per_seq[m], dtype=np.float64) for m in LENS_METRICS}
    rows = []
    for n in range(arrays["kl"].shape[0]):
        row: dict = {"layer": n, "site": site_name("resid_post", n)}
        for m in LENS_METRICS:
            row[m] = float(arrays[m][n].mean())
            row[f"{m}_ci"] = list(bootstrap_mean_ci(arrays[m][n], n_boot, seed))
        rows.append(row)
    return {"per_layer": rows, "model_ce": float(np.mean(per_seq["model_ce"][0]))}


def lens(
    lm: LoadedModel,
    batches: Sequence[Tensor],
    translator: Translator | None = None,
    n_boot: int = 1000,
    on_batch: Callable[[], None] | None = None,
) -> dict:
    """The lens over batches of token ids (full length, no padding): per-layer means with bootstrap intervals."""
    parts = []
    for ids in batches:
        parts.append(lens_batch(lm, ids, translator))
        if on_batch is not None:
            on_batch()
    joined = {m: [sum((p[m][n] for p in parts), []) for n in range(len(parts[0][m]))] for m in parts[0]}
    return summarize_lens(joined, n_boot)

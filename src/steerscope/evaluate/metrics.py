"""Next-token metrics of an intervened model against the clean one."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class CleanReference:
    """What the clean logits of a batch contribute to every comparison (computed once)."""

    probs: Tensor  # [B, P, V] float32, at the scored positions
    neg_entropy: Tensor  # [B, P] sum p log p
    target_logprob: Tensor  # [B, P]
    argmax: Tensor  # [B, P]
    target: Tensor  # [B, P, 1] next-token ids
    start: int  # first scored position


def clean_reference(logits: Tensor, ids: Tensor, skip_first: bool = True) -> CleanReference:
    """Prepare the clean side; positions scored are those with a next token, minus position 0 if skipped."""
    start = 1 if skip_first else 0
    if logits.shape[1] - 1 <= start:
        raise ValueError(f"sequences of {logits.shape[1]} tokens leave no position to score")
    logp = torch.log_softmax(logits[:, start:-1].float(), dim=-1)
    target = ids[:, start + 1 :].unsqueeze(-1).to(logits.device)
    probs = logp.exp()
    return CleanReference(
        probs=probs,
        neg_entropy=torch.linalg.vecdot(probs, logp),
        target_logprob=logp.gather(-1, target).squeeze(-1),
        argmax=logp.argmax(-1),
        target=target,
        start=start,
    )


def next_token_metrics(ref: CleanReference, patched_logits: Tensor) -> dict[str, Tensor]:
    """Per-sequence delta CE (nats), KL(clean || patched), top-1 agreement and the clean CE ([B], float64).

    KL = sum p log p - (sum p z - logsumexp z) for patched logits z: no patched log-softmax is stored.
    """
    z = patched_logits[:, ref.start : -1].float()
    if z.shape != ref.probs.shape:
        raise ValueError(f"logit shapes differ: {tuple(ref.probs.shape)} vs {tuple(z.shape)}")
    lse = torch.logsumexp(z, dim=-1)
    kl = (ref.neg_entropy - (torch.linalg.vecdot(ref.probs, z) - lse)).clamp_min(0)  # >= 0; rounding can dip below
    ce_patched = lse - z.gather(-1, ref.target).squeeze(-1)
    ce_clean = -ref.target_logprob
    return {
        "delta_ce": (ce_patched - ce_clean).double().mean(-1),
        "kl": kl.double().mean(-1),
        "top1": (z.argmax(-1) == ref.argmax).double().mean(-1),
        "clean_ce": ce_clean.double().mean(-1),
    }

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


def next_token_metrics(ref: CleanReference, patched_logits: Tensor, at_scored: bool = False) -> dict[str, Tensor]:
    """Per-sequence delta CE (nats), KL(clean || patched), top-1 agreement and the clean CE ([B], float64).

    patched_logits: [B, T, V], or [B, P, V] already at the scored positions with `at_scored`
    (`scored_positions(ref, ...)`). KL = sum p log p - (sum p z - logsumexp z) for patched logits z; one
    sequence at a time, so no [B, P, V] temporary (exp, log-softmax) is ever made.
    """
    z_all = patched_logits if at_scored else patched_logits[:, ref.start : -1]
    if z_all.shape != ref.probs.shape:
        raise ValueError(f"logit shapes differ: {tuple(ref.probs.shape)} vs {tuple(z_all.shape)}")
    kl, ce_patched, top1 = [], [], []
    for b in range(z_all.shape[0]):
        z = z_all[b].float()
        peak, argmax = z.max(-1)
        lse = (z - peak.unsqueeze(-1)).exp_().sum(-1).log_() + peak
        kl.append((ref.neg_entropy[b] - (torch.linalg.vecdot(ref.probs[b], z) - lse)).clamp_min(0))  # rounding < 0
        ce_patched.append(lse - z.gather(-1, ref.target[b]).squeeze(-1))
        top1.append(argmax == ref.argmax[b])
    ce_clean = -ref.target_logprob
    return {
        "delta_ce": (torch.stack(ce_patched) - ce_clean).double().mean(-1),
        "kl": torch.stack(kl).double().mean(-1),
        "top1": torch.stack(top1).double().mean(-1),
        "clean_ce": ce_clean.double().mean(-1),
    }


def scored_positions(ref: CleanReference, batch: int) -> Tensor:
    """The positions whose predictions are scored ([B, P]), to unembed only those."""
    count = ref.probs.shape[1]
    return torch.arange(ref.start, ref.start + count, device=ref.probs.device).expand(batch, count)

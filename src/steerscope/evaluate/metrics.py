"""Next-token metrics of an intervened model against the clean one."""

from __future__ import annotations

import torch
from torch import Tensor


def scored_log_probs(logits: Tensor, skip_first: bool = True) -> Tensor:
    """Log-probabilities at the positions that have a next token ([B, P, V], float32).

    With `skip_first`, the prediction made at position 0 is left out.
    """
    start = 1 if skip_first else 0
    if logits.shape[1] - 1 <= start:
        raise ValueError(f"sequences of {logits.shape[1]} tokens leave no position to score")
    return torch.log_softmax(logits[:, start:-1].float(), dim=-1)


def next_token_metrics(clean_lp: Tensor, patched_logits: Tensor, ids: Tensor, skip_first: bool = True) -> dict:
    """Per-sequence delta CE (nats), KL(clean || patched), top-1 agreement and the clean CE.

    `clean_lp` comes from `scored_log_probs` of the clean logits (computed once per batch).
    Returns float64 tensors of shape [batch].
    """
    patched = scored_log_probs(patched_logits, skip_first)
    if clean_lp.shape != patched.shape:
        raise ValueError(f"log-prob shapes differ: {tuple(clean_lp.shape)} vs {tuple(patched.shape)}")
    start = 1 if skip_first else 0
    target = ids[:, start + 1 :].unsqueeze(-1).to(clean_lp.device)
    ce_clean = -clean_lp.gather(-1, target).squeeze(-1).double()
    ce_patched = -patched.gather(-1, target).squeeze(-1).double()
    kl = (clean_lp.exp() * (clean_lp - patched)).sum(-1).double()
    top1 = (clean_lp.argmax(-1) == patched.argmax(-1)).double()
    return {
        "delta_ce": (ce_patched - ce_clean).mean(-1),
        "kl": kl.mean(-1),
        "top1": top1.mean(-1),
        "clean_ce": ce_clean.mean(-1),
    }

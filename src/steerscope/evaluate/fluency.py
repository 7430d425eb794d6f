"""Fluency and side effects of an intervention.

- fluency: mean cross-entropy (nats per token) of each completion's tokens given its prompt, under the
  model as it is when called (call it with no intervention active: "under the unsteered model");
- side effects: delta CE and KL(clean || intervened) of next-token predictions on natural text (by
  default the built-in Wikipedia summaries), with the intervention applied.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

import numpy as np
import torch

from ..core.corpus import token_sequences
from ..core.hooks import run_forward
from ..core.models import LoadedModel
from .metrics import CleanReference, clean_reference, next_token_metrics


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def completion_cross_entropy(
    lm: LoadedModel, prompts: Sequence[str], completions: Sequence[str], batch_size: int = 8
) -> np.ndarray:
    """Per item: mean NLL (nats/token) of the completion's tokens after its prompt; NaN for an empty completion.

    The completion's tokens are those of tokenize(prompt + completion) after its common prefix with
    tokenize(prompt), so a token merged across the boundary is scored as part of the completion.
    """
    if len(prompts) != len(completions):
        raise ValueError(f"got {len(prompts)} prompts but {len(completions)} completions")
    tok = lm.tokenizer
    out = np.full(len(prompts), np.nan)
    for start in range(0, len(prompts), batch_size):
        rows, starts = [], []
        for p, c in zip(prompts[start : start + batch_size], completions[start : start + batch_size], strict=True):
            full = tok(p + c)["input_ids"]
            rows.append(full)
            starts.append(max(1, _common_prefix(tok(p)["input_ids"], full)))
        width = max(len(r) for r in rows)
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=lm.device)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=lm.device)
        with torch.no_grad():
            logp = torch.log_softmax(run_forward(lm, {"input_ids": ids, "attention_mask": mask}).logits.float(), -1)
        nll = -logp[:, :-1].gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)  # nll[:, j] predicts column j + 1
        for i, (r, s) in enumerate(zip(rows, starts, strict=True)):
            first = width - len(r) + s  # column of the first completion token
            if first < width:
                out[start + i] = float(nll[i, first - 1 :].double().mean())
    return out


@dataclass
class SideEffectProbe:
    """Natural-text batches with their clean next-token reference, prepared once per model."""

    lm: LoadedModel
    batches: list[tuple[torch.Tensor, CleanReference]]

    @classmethod
    def prepare(
        cls, lm: LoadedModel, source: str = "wikipedia", n: int = 16, seq_len: int = 64, batch_size: int = 8, seed=0
    ) -> SideEffectProbe:
        ids = token_sequences(lm.tokenizer, source, n, seq_len, seed).to(lm.device)
        batches = []
        for chunk in ids.split(batch_size):
            with torch.no_grad():
                batches.append((chunk, clean_reference(run_forward(lm, chunk).logits, chunk)))
        return cls(lm, batches)

    def measure(self, intervention: Callable[[], AbstractContextManager]) -> dict[str, np.ndarray]:
        """Per-sequence delta CE (nats) and KL(clean || intervened) with `intervention()` active."""
        parts: dict[str, list[np.ndarray]] = {"delta_ce": [], "kl": []}
        for ids, ref in self.batches:
            with torch.no_grad(), intervention():
                metrics = next_token_metrics(ref, run_forward(self.lm, ids).logits)
            for key in parts:
                parts[key].append(metrics[key].cpu().numpy())
        return {key: np.concatenate(v) for key, v in parts.items()}

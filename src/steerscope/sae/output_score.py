"""Choosing SAE latents by their effect on the output (after Arad et al., "SAEs are good for steering, if you select
the right features"), not only by how they fire on the pairs.

The concept's output change is Delta = mean next-token log-probabilities (at the last token) of the positive texts
minus those of the negative texts, a vector over the vocabulary. A candidate latent's output change delta_j is what
adding its decoder row (scaled to `norm`) at the SAE's site, at every position of the negative texts, does to their
mean next-token log-probabilities. Its output score is cos(delta_j, Delta): 1 when steering with the latent moves
the output the way the concept does. `by="output"` in the SAE methods takes the `candidates` latents ranked highest
by AUROC on the pairs and keeps the one with the largest output score.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..core.forward import run_forward
from ..core.hooks import add
from ..core.models import LoadedModel
from ..steering.pairs import ContrastPair
from .model import SparseAutoencoder

#: latents (the highest AUROC first) whose output effect is measured when choosing by output
CANDIDATES = 8


@torch.no_grad()
def mean_last_logprobs(lm: LoadedModel, texts: Sequence[str], batch_size: int = 8, steer=None) -> Tensor:
    """Mean over texts of the next-token log-probabilities at each text's last token, float64 [V] (under
    `steer()`, a context manager, when given)."""
    total: Tensor | None = None
    for start in range(0, len(texts), batch_size):
        batch = lm.tokenize(list(texts[start : start + batch_size]))
        if steer is None:
            logits = run_forward(lm, batch, logits_to_keep=1).logits[:, -1]
        else:
            with steer():
                logits = run_forward(lm, batch, logits_to_keep=1).logits[:, -1]
        part = torch.log_softmax(logits.double(), -1).sum(0).cpu()
        total = part if total is None else total + part
    assert total is not None
    return total / len(texts)


def output_scores(
    lm: LoadedModel,
    sae: SparseAutoencoder,
    pairs: Sequence[ContrastPair],
    candidates: Sequence[int],
    norm: float,
    batch_size: int = 8,
) -> dict[int, float]:
    """{latent: cos(delta_latent, Delta)} for each candidate (see the module docstring)."""
    site = sae.cfg.site
    negatives = [p.negative for p in pairs]
    neg = mean_last_logprobs(lm, negatives, batch_size)
    concept = mean_last_logprobs(lm, [p.positive for p in pairs], batch_size) - neg
    out = {}
    for latent in candidates:
        d = sae.direction(int(latent)).float()
        d = (d / d.norm() * norm).to(lm.device)
        steered = mean_last_logprobs(lm, negatives, batch_size, steer=lambda d=d: add(lm, {site: d}, positions="all"))
        out[int(latent)] = float(torch.nn.functional.cosine_similarity(steered - neg, concept, dim=0))
    return out

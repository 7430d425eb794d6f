"""Direction-finding methods from contrast pairs."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..core.hooks import mean_activations
from ..core.models import LoadedModel
from .pairs import ContrastPair


def mean_diff(
    lm: LoadedModel, pairs: Sequence[ContrastPair], site: str, positions: str = "all", batch_size: int = 8
) -> torch.Tensor:
    """Difference of mean activations, positives minus negatives (CAA / diff-in-means), in float64.

    `positions`: "all" averages over every token of each text; "last" reads each text's last token.
    """
    if not pairs:
        raise ValueError("mean_diff needs at least one contrast pair")
    pos = mean_activations(lm, [p.positive for p in pairs], [site], positions, batch_size)[site]
    neg = mean_activations(lm, [p.negative for p in pairs], [site], positions, batch_size)[site]
    return pos - neg

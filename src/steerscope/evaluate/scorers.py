"""Offline concept scorers for generated text."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache


@lru_cache(maxsize=1)
def _vader():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def sentiment_compound(texts: Sequence[str]) -> list[float]:
    """VADER compound sentiment in [-1, 1] per text (lexicon shipped with vaderSentiment)."""
    analyzer = _vader()
    return [analyzer.polarity_scores(t)["compound"] for t in texts]


def share_positive(texts: Sequence[str], threshold: float = 0.05) -> float:
    """Share of texts whose VADER compound score is at least `threshold` (VADER's own cut-off)."""
    if not texts:
        raise ValueError("no texts to score")
    return sum(s >= threshold for s in sentiment_compound(texts)) / len(texts)

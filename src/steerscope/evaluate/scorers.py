"""Offline concept scorers for generated text."""

from __future__ import annotations

import re
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


def keyword_hits(texts: Sequence[str], keywords: Sequence[str]) -> list[float]:
    """1.0 for each text that mentions any keyword (case-insensitive, whole words; a keyword may end in '*'
    to match any ending, e.g. 'wed*'), else 0.0. ActAdd's "share of completions that mention the topic"."""
    if not keywords:
        raise ValueError("give at least one keyword")
    patterns = [re.escape(k.rstrip("*")) + (r"\w*" if k.endswith("*") else "") for k in keywords]
    rx = re.compile(r"\b(?:" + "|".join(patterns) + r")\b", re.IGNORECASE)
    return [1.0 if rx.search(t) else 0.0 for t in texts]


def topic_similarity(texts: Sequence[str], topic: str) -> list[float]:
    """Cosine similarity of each text's all-MiniLM-L6-v2 embedding with the topic description's."""
    from .embeddings import embed

    vectors = embed([topic, *texts])
    return [float(v) for v in vectors[1:] @ vectors[0]]

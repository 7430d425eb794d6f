"""Built-in contrast pairs (written for steerscope).

A small starter set used by the quick steering job; the full datasets with held-out splits live
beside it as they are added.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ContrastPair:
    positive: str
    negative: str


SENTIMENT_STARTER = [
    ContrastPair(
        "I love this. It is wonderful and makes me so happy.", "I hate this. It is awful and makes me so sad."
    ),
    ContrastPair("What a beautiful, delightful day!", "What a miserable, dreadful day!"),
    ContrastPair("The food was delicious and the staff were kind.", "The food was disgusting and the staff were rude."),
    ContrastPair("I am thrilled with the excellent results.", "I am furious about the terrible results."),
    ContrastPair("This movie was a joy to watch, truly brilliant.", "This movie was a pain to watch, truly dreadful."),
    ContrastPair("My friends are great and I feel grateful.", "My friends are cruel and I feel bitter."),
    ContrastPair("The trip was fantastic; everything went perfectly.", "The trip was horrible; everything went wrong."),
    ContrastPair("I adore my new home, it is cozy and bright.", "I loathe my new home, it is cramped and gloomy."),
]

STARTER_SETS = {"sentiment": SENTIMENT_STARTER}


def starter_pairs(name: str) -> list[ContrastPair]:
    """A built-in starter set by name."""
    if name not in STARTER_SETS:
        raise ValueError(f"unknown pair set {name!r}; built-in sets: {', '.join(STARTER_SETS)}")
    return list(STARTER_SETS[name])

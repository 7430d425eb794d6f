"""Datasets of a sweep: contrast pairs to fit vectors, held-out prompts to steer, a concept scorer, and the
instruction the prompting baseline puts before each prompt.

Held-out prompts come from a JSON file: a list, or a mapping of groups to lists (e.g. neutral / negative).
Validation / test split (deterministic): within each group, prompts at even positions (0, 2, ...) are
validation, those at odd positions test. Vectors are fitted on the pairs' train split only.

A dataset of your own is a [datasets.NAME] table: pairs (built-in name or file), prompts (JSON file),
scorer ("sentiment", "keywords" or "topic"), keywords (list, for "keywords"), topic (text, for "topic"),
instruction (what the prompting baseline asks for; see ConceptTask.prompted). The built-in sentiment
instruction and its chat form were chosen on validation prompts among three phrasings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from ..evaluate.scorers import keyword_hits, sentiment_compound, topic_similarity
from ..steering.pairs import ContrastPair, load_pairs

SPLITS = ("validation", "test")
SCORERS = ("sentiment", "keywords", "topic")
#: the metric each scorer's effect is read from (per item; its mean is the effect)
EFFECT_METRIC = {"sentiment": "positive", "keywords": "keyword_rate", "topic": "topic_similarity"}
WEDDING_WORDS = ["wedding*", "marri*", "bride*", "groom*", "honeymoon*", "ceremon*", "vows"]


def _builtin_prompts() -> str:
    return str(resources.files("steerscope") / "data" / "sentiment_prompts.json")


BUILTIN = {
    "sentiment": {
        "pairs": "sentiment",
        "prompts": "builtin:sentiment_prompts",
        "scorer": "sentiment",
        "instruction": "Continue this text in a warm, positive and happy tone:",
    },
    "weddings": {
        "pairs": "weddings",
        "prompts": "builtin:sentiment_prompts",
        "scorer": "keywords",
        "keywords": WEDDING_WORDS,
        "instruction": "Continue this text and make it about a wedding:",
    },
}


@dataclass
class ConceptTask:
    name: str
    pairs: str
    prompts: str
    scorer: str
    instruction: str
    keywords: list[str] = field(default_factory=list)
    topic: str = ""

    def __post_init__(self) -> None:
        if self.scorer not in SCORERS:
            raise ValueError(f"dataset {self.name}: scorer must be one of {', '.join(SCORERS)}, got {self.scorer!r}")
        if self.scorer == "keywords" and not self.keywords:
            raise ValueError(f"dataset {self.name}: the keywords scorer needs a list 'keywords'")
        if self.scorer == "topic" and not self.topic:
            raise ValueError(f"dataset {self.name}: the topic scorer needs a 'topic' description")

    @property
    def effect_metric(self) -> str:
        return EFFECT_METRIC[self.scorer]

    def train_pairs(self) -> list[ContrastPair]:
        return load_pairs(self.pairs, "train")

    def split_prompts(self) -> dict[str, list[str]]:
        """{"validation": [...], "test": [...]} by the even / odd rule in the module docstring."""
        path = _builtin_prompts() if self.prompts == "builtin:sentiment_prompts" else self.prompts
        if not Path(path).is_file():
            raise FileNotFoundError(f"dataset {self.name}: no prompt file at {path}")
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        groups = [data] if isinstance(data, list) else [v for v in data.values() if isinstance(v, list)]
        if not groups or not all(isinstance(p, str) for g in groups for p in g):
            raise ValueError(f"dataset {self.name}: {path} must hold a list of prompts or a mapping of such lists")
        out = {s: [p for g in groups for p in g[i::2]] for i, s in enumerate(SPLITS)}
        if not out["test"]:
            raise ValueError(f"dataset {self.name}: {path} needs at least two prompts (one per split)")
        return out

    def prompted(self, tokenizer, prompts: list[str]) -> list[str]:
        """The prompting baseline's inputs: with a chat template, a user turn "<instruction> <prompt>" and the
        assistant's reply started with the prompt itself; without one, "<instruction>\n\n<prompt>"."""
        if getattr(tokenizer, "chat_template", None):
            return [
                tokenizer.apply_chat_template(
                    [{"role": "user", "content": f"{self.instruction} {p}"}], tokenize=False, add_generation_prompt=True
                )
                + p
                for p in prompts
            ]
        return [f"{self.instruction}\n\n{p}" for p in prompts]

    def score(self, texts: list[str]) -> dict[str, np.ndarray]:
        """Per-item concept scores; the effect metric is among them."""
        if self.scorer == "sentiment":
            compound = np.asarray(sentiment_compound(texts))
            return {"positive": (compound >= 0.05).astype(float), "sentiment": compound}
        if self.scorer == "keywords":
            return {"keyword_rate": np.asarray(keyword_hits(texts, self.keywords))}
        return {"topic_similarity": np.asarray(topic_similarity(texts, self.topic))}


def get_task(name: str, custom: dict | None = None) -> ConceptTask:
    """A built-in dataset (sentiment, weddings) or one defined in the config."""
    spec = (custom or {}).get(name) or BUILTIN.get(name)
    if spec is None:
        raise ValueError(
            f"unknown dataset {name!r}; built-in: {', '.join(BUILTIN)}, or define [datasets.{name}] in the config"
        )
    allowed = {"pairs", "prompts", "scorer", "instruction", "keywords", "topic"}
    unknown = set(spec) - allowed
    if unknown:
        raise ValueError(f"dataset {name}: unknown key(s) {sorted(unknown)}; allowed: {', '.join(sorted(allowed))}")
    missing = {"pairs", "prompts", "scorer", "instruction"} - set(spec)
    if missing:
        raise ValueError(f"dataset {name}: missing key(s) {sorted(missing)}")
    return ConceptTask(name=name, **spec)
